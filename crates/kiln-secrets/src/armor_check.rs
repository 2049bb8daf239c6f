//! Finds *where* an armored age file is damaged, so that an error can name the line.
//! Called only after age refused a file; it never decides whether a file is valid.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const END: &str = "-----END AGE ENCRYPTED FILE-----";
const COLUMNS: usize = 64;
/// Decoded bytes per full armor line.
const BYTES_PER_LINE: usize = COLUMNS / 4 * 3;

/// A located problem: 1-based line number and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub line: usize,
    pub reason: String,
}

/// Where the decoded age structure sits in the armored text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Line holding the header's `---` MAC line.
    pub mac_line: usize,
    /// Line holding the first payload byte.
    pub payload_line: usize,
    /// Last line of the file.
    pub last_line: usize,
}

/// Checks the armor itself (markers, line lengths, base64). `Err` names the first bad line.
pub(crate) fn check(text: &str) -> Result<Layout, Damage> {
    let lines: Vec<&str> = text.lines().collect();
    let bad = |line: usize, reason: &str| Damage {
        line,
        reason: reason.to_owned(),
    };
    match lines.first() {
        None => return Err(bad(1, "the file is empty")),
        Some(first) if first.trim_end() != BEGIN => {
            return Err(bad(
                1,
                "the file does not start with `-----BEGIN AGE ENCRYPTED FILE-----`",
            ));
        }
        Some(_) => {}
    }
    let mut body = String::new();
    let mut end_line = None;
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let line_no = i + 1;
        let line = raw.trim_end();
        if line == END {
            end_line = Some(line_no);
            break;
        }
        if line.len() > COLUMNS {
            return Err(bad(line_no, "armor line longer than 64 characters"));
        }
        if !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            return Err(bad(
                line_no,
                "armor line holds characters that are not base64",
            ));
        }
        if line.len() < COLUMNS {
            // Only the last body line may be short: the next one must be the END marker.
            match lines.get(i + 1).map(|l| l.trim_end()) {
                Some(next) if next == END => {}
                Some(_) => return Err(bad(line_no, "short armor line in the middle of the file")),
                None => {
                    return Err(bad(
                        line_no,
                        "the file ends here without the END marker (truncated?)",
                    ));
                }
            }
        }
        body.push_str(line);
    }
    let Some(end_line) = end_line else {
        return Err(bad(
            lines.len(),
            "the file ends here without the END marker (truncated?)",
        ));
    };
    if let Some((i, _)) = lines
        .iter()
        .enumerate()
        .skip(end_line)
        .find(|(_, l)| !l.trim().is_empty())
    {
        return Err(bad(i + 1, "text after the END marker"));
    }
    let bytes = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| bad(end_line.saturating_sub(1).max(2), "invalid base64 padding"))?;
    let line_of = |offset: usize| 2 + offset / BYTES_PER_LINE;
    let Some(mac_at) = find(&bytes, b"\n---") else {
        return Err(bad(
            line_of(bytes.len().saturating_sub(1)),
            "the age header has no MAC line (truncated?)",
        ));
    };
    let mac_at = mac_at + 1;
    let header_end = bytes[mac_at..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| mac_at + p + 1);
    let Some(header_end) = header_end else {
        return Err(bad(
            line_of(mac_at),
            "the age header's MAC line is cut off (truncated?)",
        ));
    };
    if !bytes.starts_with(b"age-encryption.org/v1\n") {
        return Err(bad(2, "the decoded file is not an age v1 file"));
    }
    Ok(Layout {
        mac_line: line_of(mac_at),
        payload_line: line_of(header_end),
        last_line: lines.len(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let key = age::x25519::Identity::generate();
        age::encrypt_and_armor(&key.to_public(), b"value").unwrap()
    }

    #[test]
    fn a_valid_file_has_a_layout() {
        let text = sample();
        let layout = check(&text).unwrap();
        assert!(layout.mac_line >= 2 && layout.payload_line >= layout.mac_line);
        assert_eq!(layout.last_line, text.lines().count());
    }

    #[test]
    fn truncation_names_the_last_line() {
        let text = sample();
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines[..lines.len() - 2].join("\n");
        let d = check(&cut).unwrap_err();
        assert_eq!(d.line, lines.len() - 2);
        assert!(d.reason.contains("truncated"), "{d:?}");
    }

    #[test]
    fn a_bad_character_names_its_line() {
        let text = sample();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[2].replace_range(3..4, "!");
        let d = check(&lines.join("\n")).unwrap_err();
        assert_eq!(d.line, 3);
    }

    #[test]
    fn a_missing_begin_marker_is_line_1() {
        assert_eq!(check("hello\n").unwrap_err().line, 1);
        assert_eq!(check("").unwrap_err().line, 1);
    }
}
