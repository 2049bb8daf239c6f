//! `[roles.<role>]`: the plain resources of contract 1 (paths, modes, owners, exactly one
//! content source whose file exists, notify → declared unit, triggers → managed file).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use super::{Ctx, DUPLICATE, INVALID, MISSING, UNKNOWN_REF};
use crate::checks;
use crate::diagnostic::suggest;
use crate::model::*;
use crate::raw::*;

fn mode(cx: &mut Ctx<'_>, m: &Option<S<String>>, default: u32) -> u32 {
    let Some(m) = m else { return default };
    match checks::mode(m.get_ref()) {
        Ok(v) => v,
        Err(reason) => {
            let e = cx
                .at(m.span(), INVALID, format!("mode {reason}"))
                .label("invalid mode")
                .help("write the mode as an octal string, like `mode = \"0640\"`");
            cx.push(e);
            default
        }
    }
}

fn owner(cx: &mut Ctx<'_>, o: &Option<S<String>>) -> String {
    match o {
        None => DEFAULT_OWNER.to_string(),
        Some(o) => {
            cx.check(
                o,
                "owner/group",
                checks::unix_name,
                "give a user or group name like `root` or `www-data`",
            );
            o.get_ref().clone()
        }
    }
}

fn abs_path(cx: &mut Ctx<'_>, p: &S<String>) -> PathBuf {
    cx.check(
        p,
        "path",
        checks::absolute_path,
        "paths on the host are absolute, like `/etc/app/app.conf`",
    );
    PathBuf::from(p.get_ref())
}

/// Exactly one of template / content / source, the referenced file existing.
fn content(
    cx: &mut Ctx<'_>,
    item_span: Range<usize>,
    what: &str,
    template: &Option<S<String>>,
    inline: &Option<S<String>>,
    source: &Option<S<String>>,
) -> Content {
    let given: Vec<(&str, &S<String>)> = [
        ("template", template),
        ("content", inline),
        ("source", source),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    match given.as_slice() {
        [] => {
            let e = cx
                .at(item_span, MISSING, format!("{what} has no content"))
                .label("no template, content or source")
                .help("give exactly one of `template = \"templates/x.j2\"`, `content = \"...\"` or `source = \"files/x\"`");
            cx.push(e);
            Content::Inline(String::new())
        }
        [(kind, value)] => match *kind {
            "content" => Content::Inline(value.get_ref().clone()),
            kind => {
                let path = PathBuf::from(value.get_ref());
                if cx.check(
                    value,
                    kind,
                    checks::relative_path,
                    "paths are relative to kiln.toml's folder, like `templates/app.conf.j2`",
                ) {
                    let full = cx.base_dir.join(&path);
                    if !full.is_file() {
                        let e = cx
                            .at(
                                value.span(),
                                "kiln::config::missing_file",
                                format!("{kind} file `{}` does not exist", value.get_ref()),
                            )
                            .label("no such file")
                            .help("create it, or fix the path (relative to kiln.toml's folder)");
                        cx.push(e);
                    }
                }
                if kind == "template" {
                    Content::Template(path)
                } else {
                    Content::Source(path)
                }
            }
        },
        [(first, _), (second, value), ..] => {
            let e = cx
                .at(
                    value.span(),
                    INVALID,
                    format!("{what} has both `{first}` and `{second}`"),
                )
                .label("second content source")
                .help("give exactly one of `template`, `content` or `source`");
            cx.push(e);
            Content::Inline(String::new())
        }
    }
}

pub(super) fn roles(
    cx: &mut Ctx<'_>,
    raw: &[(S<String>, RawRole)],
    envs: &[(S<String>, RawEnvironment)],
) -> BTreeMap<String, Role> {
    let all_roles: BTreeSet<&str> = envs
        .iter()
        .flat_map(|(_, e)| e.hosts.iter().map(|(r, _)| r.get_ref().as_str()))
        .collect();
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let rname = name.get_ref().as_str();
        if !all_roles.contains(rname) && !envs.is_empty() {
            let help = suggest(rname, "host roles", all_roles.iter().copied());
            let e = cx
                .at(
                    name.span(),
                    UNKNOWN_REF,
                    format!("role `{rname}` is not the role of any host"),
                )
                .label("no host plays this role")
                .help(help);
            cx.push(e);
        }
        let mut role = Role {
            name: rname.to_string(),
            ..Role::default()
        };
        for p in &r.packages {
            cx.check(
                p,
                "package name",
                |s| {
                    let ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+._@-".contains(c));
                    if ok {
                        Ok(())
                    } else {
                        Err("is not a package name".into())
                    }
                },
                "give the distribution's package name, like `htop`",
            );
            role.packages.push(p.get_ref().clone());
        }
        role.vars = r.vars.clone().unwrap_or_default();

        let mut paths: BTreeMap<String, Range<usize>> = BTreeMap::new();
        let mut claim_path = |cx: &mut Ctx<'_>, p: &S<String>| {
            if let Some(first) = paths.get(p.get_ref()) {
                let e = cx
                    .at(
                        p.span(),
                        DUPLICATE,
                        format!("path `{}` is managed twice in role `{rname}`", p.get_ref()),
                    )
                    .label("declared again")
                    .also("first declared here", first.clone())
                    .help("keep one declaration per path");
                cx.push(e);
            } else {
                paths.insert(p.get_ref().clone(), p.span());
            }
        };

        let mut units_seen: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for u in &r.units {
            let raw_u = u.get_ref();
            cx.check(
                &raw_u.name,
                "unit name",
                checks::unit_name,
                "name the systemd unit, like `app.service`",
            );
            if let Some(first) = units_seen.get(raw_u.name.get_ref().as_str()) {
                let e = cx
                    .at(
                        raw_u.name.span(),
                        DUPLICATE,
                        format!(
                            "unit `{}` is declared twice in role `{rname}`",
                            raw_u.name.get_ref()
                        ),
                    )
                    .label("declared again")
                    .also("first declared here", first.clone())
                    .help("keep one declaration per unit");
                cx.push(e);
            } else {
                units_seen.insert(raw_u.name.get_ref(), raw_u.name.span());
            }
            let c = content(
                cx,
                u.span(),
                &format!("unit `{}`", raw_u.name.get_ref()),
                &raw_u.template,
                &raw_u.content,
                &raw_u.source,
            );
            role.units.push(Unit {
                name: raw_u.name.get_ref().clone(),
                content: c,
                enabled: raw_u.enabled.unwrap_or(true),
                started: raw_u.started.unwrap_or(true),
            });
        }

        for d in &r.directories {
            let d = d.get_ref();
            claim_path(cx, &d.path);
            role.directories.push(Directory {
                path: abs_path(cx, &d.path),
                mode: mode(cx, &d.mode, DEFAULT_DIRECTORY_MODE),
                owner: owner(cx, &d.owner),
                group: owner(cx, &d.group),
            });
        }
        for f in &r.files {
            let raw_f = f.get_ref();
            claim_path(cx, &raw_f.path);
            let c = content(
                cx,
                f.span(),
                &format!("file `{}`", raw_f.path.get_ref()),
                &raw_f.template,
                &raw_f.content,
                &raw_f.source,
            );
            for n in &raw_f.notify {
                if !units_seen.contains_key(n.get_ref().as_str())
                    && !crate::model::BASE_UNITS.contains(&n.get_ref().as_str())
                {
                    let help = if units_seen.is_empty() {
                        format!(
                            "declare it with `[[roles.{rname}.units]]`, name = \"{}\"",
                            n.get_ref()
                        )
                    } else {
                        suggest(
                            n.get_ref(),
                            "units of this role",
                            units_seen.keys().copied(),
                        )
                    };
                    let e = cx
                        .at(n.span(), UNKNOWN_REF, format!("file `{}` notifies unit `{}`, which role `{rname}` does not declare", raw_f.path.get_ref(), n.get_ref()))
                        .label("undeclared unit")
                        .help(help);
                    cx.push(e);
                }
            }
            role.files.push(File {
                path: abs_path(cx, &raw_f.path),
                content: c,
                mode: mode(cx, &raw_f.mode, DEFAULT_FILE_MODE),
                owner: owner(cx, &raw_f.owner),
                group: owner(cx, &raw_f.group),
                notify: raw_f.notify.iter().map(|n| n.get_ref().clone()).collect(),
            });
        }
        for s in &r.symlinks {
            let s = s.get_ref();
            claim_path(cx, &s.path);
            cx.check(
                &s.target,
                "symlink target",
                |t| {
                    if t.is_empty() {
                        Err("is empty".into())
                    } else {
                        Ok(())
                    }
                },
                "give the path the link points to",
            );
            role.symlinks.push(Symlink {
                path: abs_path(cx, &s.path),
                target: PathBuf::from(s.target.get_ref()),
            });
        }
        for g in &r.groups {
            let g = g.get_ref();
            cx.check(&g.name, "group name", checks::unix_name, "like `app`");
            role.groups.push(Group {
                name: g.name.get_ref().clone(),
                system: g.system,
            });
        }
        for u in &r.users {
            let u = u.get_ref();
            cx.check(&u.name, "user name", checks::unix_name, "like `app`");
            for g in &u.groups {
                cx.check(g, "group name", checks::unix_name, "like `app`");
            }
            role.users.push(User {
                name: u.name.get_ref().clone(),
                system: u.system,
                home: u.home.as_ref().map(|h| abs_path(cx, h)),
                shell: u.shell.as_ref().map(|s| abs_path(cx, s)),
                groups: u.groups.iter().map(|g| g.get_ref().clone()).collect(),
            });
        }
        let file_paths: BTreeSet<&str> = r
            .files
            .iter()
            .map(|f| f.get_ref().path.get_ref().as_str())
            .collect();
        let mut command_names: BTreeMap<&str, Range<usize>> = BTreeMap::new();
        for c in &r.commands {
            let c = c.get_ref();
            cx.check(
                &c.name,
                "command name",
                |s| {
                    if s.is_empty() || s.contains(char::is_whitespace) {
                        Err("must be a non-empty word".into())
                    } else {
                        Ok(())
                    }
                },
                "like `init-app-db`",
            );
            if let Some(first) = command_names.get(c.name.get_ref().as_str()) {
                let e = cx
                    .at(
                        c.name.span(),
                        DUPLICATE,
                        format!(
                            "command `{}` is declared twice in role `{rname}`",
                            c.name.get_ref()
                        ),
                    )
                    .label("declared again")
                    .also("first declared here", first.clone())
                    .help("command names are unique within a role");
                cx.push(e);
            } else {
                command_names.insert(c.name.get_ref(), c.name.span());
            }
            cx.check(
                &c.run,
                "command",
                |s| {
                    if s.trim().is_empty() {
                        Err("is empty".into())
                    } else {
                        Ok(())
                    }
                },
                "give the shell command to run",
            );
            for t in &c.triggered_by {
                if !file_paths.contains(t.get_ref().as_str()) {
                    let help = if file_paths.is_empty() {
                        format!(
                            "declare the file with `[[roles.{rname}.files]]`, or remove it from `triggered_by`"
                        )
                    } else {
                        suggest(t.get_ref(), "managed files", file_paths.iter().copied())
                    };
                    let e = cx
                        .at(t.span(), UNKNOWN_REF, format!("command `{}` is triggered by `{}`, which role `{rname}` does not manage", c.name.get_ref(), t.get_ref()))
                        .label("not a managed file")
                        .help(help);
                    cx.push(e);
                }
            }
            role.commands.push(Command {
                name: c.name.get_ref().clone(),
                run: c.run.get_ref().clone(),
                unless: c.unless.as_ref().map(|u| u.get_ref().clone()),
                triggered_by: c
                    .triggered_by
                    .iter()
                    .map(|t| PathBuf::from(t.get_ref()))
                    .collect(),
            });
        }
        out.insert(rname.to_string(), role);
    }
    out
}
