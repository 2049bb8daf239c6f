//! A host's plan as text: one line per change with a symbol, its details and reason, and
//! the file diff under it (creations cut after a few lines, secrets never shown).

use kiln_converge::Plan;
use kiln_converge::plan::{Diff, Op};

fn symbol(op: Op) -> &'static str {
    match op {
        Op::Create | Op::Install => "+",
        Op::Remove | Op::Uninstall => "-",
        Op::Restore => "↩",
        Op::Restart | Op::Reload | Op::DaemonReload => "↻",
        Op::Run => "!",
        _ => "~",
    }
}

const CREATE_DIFF_LINES: usize = 20;

/// Renders one host's plan as text.
pub fn render_plan(name: &str, plan: &Plan) -> String {
    let mut out = String::new();
    let c = plan.counts();
    if plan.is_empty() {
        out.push_str(&format!("{name}: no changes\n"));
        warnings(&mut out, plan);
        return out;
    }
    out.push_str(&format!(
        "{name}: {} to create, {} to change, {} to remove\n",
        c.create, c.change, c.remove
    ));
    for ch in &plan.changes {
        let mut line = format!("  {} {} {}", symbol(ch.op), ch.op, ch.id);
        let mut extra: Vec<String> = ch.details.clone();
        if let Some(r) = &ch.reason {
            extra.push(format!("because {r}"));
        }
        if !extra.is_empty() {
            line.push_str(&format!("  ({})", extra.join("; ")));
        }
        out.push_str(&line);
        out.push('\n');
        match &ch.diff {
            Some(Diff::Unified { text }) => {
                let lines: Vec<&str> = text.lines().collect();
                let limit = if ch.op == Op::Create {
                    CREATE_DIFF_LINES
                } else {
                    usize::MAX
                };
                for l in lines.iter().take(limit) {
                    out.push_str(&format!("      {l}\n"));
                }
                if lines.len() > limit {
                    out.push_str(&format!("      … {} more lines\n", lines.len() - limit));
                }
            }
            Some(Diff::Redacted) => out.push_str("      (content holds a secret: diff hidden)\n"),
            Some(Diff::Opaque { new_bytes }) => out.push_str(&format!(
                "      (binary or large content, {new_bytes} bytes)\n"
            )),
            None => {}
        }
    }
    for g in &plan.groups {
        let mut ids: Vec<String> = vec![];
        for c in g.changes.iter().filter_map(|i| plan.changes.get(*i)) {
            // A unit enabled and started is named once.
            let id = c.id.to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        out.push_str(&format!(
            "  guarded {}: {} (kept only if a fresh SSH login works afterwards, else rolled back)\n",
            g.name,
            ids.join(", ")
        ));
    }
    warnings(&mut out, plan);
    out
}

/// `  warning: …`, continuation lines kept under it.
fn warnings(out: &mut String, plan: &Plan) {
    for w in &plan.warnings {
        for (i, line) in w.lines().enumerate() {
            if i == 0 {
                out.push_str(&format!("  warning: {line}\n"));
            } else {
                out.push_str(&format!("  {}\n", line.trim_start()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_converge::Change;
    use kiln_converge::owned::Owned;
    use kiln_converge::resource::ResourceId;

    fn change(id: ResourceId, op: Op) -> Change {
        Change {
            id,
            op,
            details: vec![],
            diff: None,
            reason: None,
            content: false,
        }
    }

    // Moved from commands/plan.rs with `render_plan`.
    #[test]
    fn plans_render_with_symbols_details_diffs_and_redaction() {
        let mut upd = change(ResourceId::File("/etc/app.conf".into()), Op::Update);
        upd.details = vec!["content".into(), "mode 0644 → 0600".into()];
        upd.diff = Some(Diff::Unified {
            text: "--- a/etc/app.conf\n+++ b/etc/app.conf\n@@ -1 +1 @@\n-a=1\n+a=2\n".into(),
        });
        let mut secret = change(ResourceId::File("/etc/db.env".into()), Op::Create);
        secret.diff = Some(Diff::Redacted);
        let mut restart = change(ResourceId::Unit("app.service".into()), Op::Restart);
        restart.reason = Some("/etc/app.conf changed".into());
        let plan = Plan {
            host: "web".into(),
            changes: vec![
                upd,
                secret,
                restart,
                change(ResourceId::Symlink("/usr/bin/x".into()), Op::Remove),
            ],
            owned_after: Owned::default(),
            groups: vec![],
            warnings: vec![],
        };
        assert_eq!(
            render_plan("web", &plan),
            "web: 1 to create, 2 to change, 1 to remove\n\
             \x20 ~ update file /etc/app.conf  (content; mode 0644 → 0600)\n\
             \x20     --- a/etc/app.conf\n\
             \x20     +++ b/etc/app.conf\n\
             \x20     @@ -1 +1 @@\n\
             \x20     -a=1\n\
             \x20     +a=2\n\
             \x20 + create file /etc/db.env\n\
             \x20     (content holds a secret: diff hidden)\n\
             \x20 ↻ restart unit app.service  (because /etc/app.conf changed)\n\
             \x20 - remove symlink /usr/bin/x\n"
        );
        let empty = Plan {
            host: "web".into(),
            changes: vec![],
            owned_after: Owned::default(),
            groups: vec![],
            warnings: vec![],
        };
        assert_eq!(render_plan("web", &empty), "web: no changes\n");
    }

    #[test]
    fn warnings_follow_the_changes_even_without_any() {
        let plan = Plan {
            host: "web".into(),
            changes: vec![],
            owned_after: Owned::default(),
            groups: vec![],
            warnings: vec!["first line\n  hint: second".into()],
        };
        assert_eq!(
            render_plan("web", &plan),
            "web: no changes\n  warning: first line\n  hint: second\n"
        );
    }

    #[test]
    fn guarded_groups_are_named_under_the_changes() {
        let plan = Plan {
            host: "web".into(),
            changes: vec![
                change(ResourceId::File("/etc/ssh/sshd_config".into()), Op::Update),
                change(ResourceId::Unit("ssh.service".into()), Op::Restart),
            ],
            owned_after: Owned::default(),
            groups: vec![kiln_converge::guard::GuardGroup {
                name: "sshd".into(),
                changes: vec![0, 1],
            }],
            warnings: vec![],
        };
        assert_eq!(
            render_plan("web", &plan),
            "web: 0 to create, 2 to change, 0 to remove\n\
             \x20 ~ update file /etc/ssh/sshd_config\n\
             \x20 ↻ restart unit ssh.service\n\
             \x20 guarded sshd: file /etc/ssh/sshd_config, unit ssh.service (kept only if a fresh SSH login works afterwards, else rolled back)\n"
        );
    }
}
