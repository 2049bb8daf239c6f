//! Property tests: the parser and validator never panic, whatever they are fed — arbitrary
//! strings, TOML-looking noise, and mutated versions of the valid corpus (byte flips,
//! truncations, deleted and duplicated lines). Every error they return points inside the
//! file and renders. Case counts are bounded so the suite stays fast.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn corpus() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/config/valid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.push(root.join("examples/reference/kiln.toml"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

fn base_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/config/valid")
}

/// Parses `text`; on error, checks every diagnostic is located inside the text and that
/// rendering works. Panics (failing the property) on any violation.
fn parse_and_render(text: &str) {
    match kiln_model::parse_str("fuzz.toml", text, &base_dir()) {
        Ok(model) => {
            // A valid model must also survive everything downstream code does with it.
            let _ = model.required_secrets();
            for env in &model.environments {
                let records = kiln_model::dns::records(&model, env);
                let _ = kiln_model::dns::render_zone(env, &records, 3600);
                for h in env.hosts.values() {
                    let _ = h.host_key_fingerprints();
                }
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "an error without diagnostics");
            for e in diags.items() {
                if let Some(span) = &e.span {
                    assert!(
                        span.end <= text.len(),
                        "span {span:?} past the end ({})",
                        text.len()
                    );
                    assert!(e.location().is_some());
                }
                assert!(!e.message.is_empty());
            }
            let _ = diags.render(80, false);
            let _ = diags.to_string();
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(150)
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte { at: usize, to: u8 },
    Truncate { at: usize },
    DeleteLine { line: usize },
    DuplicateLine { line: usize },
    InsertText { at: usize, text: String },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, to)| Mutation::FlipByte { at, to }),
        4 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        4 => any::<usize>().prop_map(|line| Mutation::DeleteLine { line }),
        4 => any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        4 => (
            any::<usize>(),
            prop::sample::select(vec![
                "=",
                "[",
                "]",
                "[[",
                "\"",
                "'''",
                "\n",
                "{",
                "}",
                ",",
                "#",
                ".",
                "é",
                "\u{0}",
                "\r\n",
                "x = 1\n",
                "[environments.x]\n",
                "host = \"nope\"\n",
                "[[roles.services.files]]\n",
                "ssh_port = 99999\n",
                "kind = \"synapse\"\n",
                "99999999999999999999",
            ])
        )
            .prop_map(|(at, t)| Mutation::InsertText {
                at,
                text: t.to_string()
            }),
        // Lines longer than a terminal (and than miette's 65535-column limit).
        1 => (any::<usize>(), 60_000usize..70_000)
            .prop_map(|(at, n)| Mutation::InsertText { at, text: "x".repeat(n) }),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        match m {
            Mutation::FlipByte { at, to } if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] = *to;
            }
            Mutation::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::DeleteLine { line } | Mutation::DuplicateLine { line } => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let i = line % lines.len();
                    if matches!(m, Mutation::DeleteLine { .. }) {
                        lines.remove(i);
                    } else {
                        lines.insert(i, lines[i]);
                    }
                }
                bytes = lines.concat().into_bytes();
            }
            Mutation::InsertText { at, text } => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, text.bytes());
            }
            Mutation::FlipByte { .. } => {}
        }
    }
    // kiln reads kiln.toml as UTF-8 (a file that is not is rejected before parsing).
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    // 150 cases per property by default (a few seconds); PROPTEST_CASES=5000 for a long run.
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        parse_and_render(&text);
    }

    #[test]
    fn toml_looking_noise_never_panics(text in "([a-z_]{1,8} = (\"[a-z.@:/ ]{0,12}\"|[0-9-]{1,6}|true|\\[\\]|\\{\\}))?(\n|\\[[a-z.]{1,20}\\]\n|\\[\\[[a-z.]{1,20}\\]\\]\n){0,30}") {
        parse_and_render(&text);
    }

    #[test]
    fn mutated_corpus_never_panics(
        file in 0usize..64,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let (_, text) = &corpus[file % corpus.len()];
        parse_and_render(&apply(text, &mutations));
    }
}

#[test]
fn every_single_line_deletion_of_the_reference_is_handled() {
    // Exhaustive rather than random: each line of the reference example removed in turn.
    for (name, text) in corpus() {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for i in 0..lines.len() {
            let mut l = lines.clone();
            l.remove(i);
            let mutated = l.concat();
            let result = std::panic::catch_unwind(|| parse_and_render(&mutated));
            assert!(result.is_ok(), "{name}: deleting line {} panicked", i + 1);
        }
    }
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_not_a_panic() {
    let path = std::env::temp_dir().join(format!("kiln-fuzz-{}.toml", std::process::id()));
    std::fs::write(&path, b"[project]\nname = \"\xff\xfe\"\n").unwrap();
    let err = kiln_model::load(&path).expect_err("non-UTF-8 accepted");
    assert!(err.to_string().contains("cannot read"), "{err}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn errors_on_very_long_lines_render_without_a_snippet() {
    for text in [
        "a = ".to_string() + &"[".repeat(100_000),
        format!("[project]\nname = \"{}\"\n", "x".repeat(70_000)),
    ] {
        let diags = kiln_model::parse_str("long.toml", &text, &base_dir()).expect_err("accepted");
        let rendered = diags.render(80, false);
        assert!(
            rendered.contains("at long.toml:"),
            "{}",
            &rendered[..rendered.len().min(500)]
        );
        assert!(rendered.len() < 10_000, "the long line was drawn");
    }
}
