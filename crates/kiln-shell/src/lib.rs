//! Quoting for POSIX shells: every word kiln puts into a command line that a shell will
//! read (over SSH, through sudo, into a lab server) goes through [`quote`], here and nowhere
//! else. Small on purpose, so it can be audited: safe words pass unchanged, anything else is
//! wrapped in single quotes with embedded single quotes written as `'\''`.

/// Quotes one word for `sh`.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each word and joins them with spaces.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn safe_words_pass_and_others_are_single_quoted() {
        assert_eq!(
            quote("/var/lib/kiln/bin/kiln-abc"),
            "/var/lib/kiln/bin/kiln-abc"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(join(&["echo", "x;y"]), "echo 'x;y'");
    }

    #[test]
    fn quoting_keeps_plain_words_and_quotes_the_rest() {
        // (moved from kiln-lab's cmd.rs, whose copy of this function is gone)
        assert_eq!(quote("abc-1.2/x"), "abc-1.2/x");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        // (moved from kiln-cli's init.rs, whose copy of this function is gone)
        assert_eq!(quote("my-infra/x"), "my-infra/x");
        assert_eq!(quote("/tmp/My Infra"), "'/tmp/My Infra'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    proptest! {
        // The shell gives back exactly the word we quoted, whatever it contains.
        #[test]
        fn sh_reads_back_the_original_word(word in "[^\u{0}]{0,40}") {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(&word)))
                .output()
                .unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out.stdout).into_owned(), word);
        }
    }
}
