//! The little XML the S3 and IAM APIs need: escaping values put into request bodies, and
//! reading the text of tags out of answers (no namespaces, no nesting of the same tag).

/// Escapes `&`, `<`, `>`, `"` and `'` for element text or attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`] (the five predefined entities and numeric character references).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Raw content of every `<tag>...</tag>` in `xml`, in order (still escaped: blocks to search
/// further).
pub fn blocks(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    out
}

/// Text of every `<tag>...</tag>` in `xml`, unescaped.
pub fn values(xml: &str, tag: &str) -> Vec<String> {
    blocks(xml, tag).iter().map(|b| unescape(b)).collect()
}

/// Text of the first `<tag>`, unescaped.
pub fn first(xml: &str, tag: &str) -> Option<String> {
    values(xml, tag).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_values_reads_repeated_tags() {
        let x = "<R><Version><Key>a</Key><VersionId>1</VersionId></Version><Version><Key>b</Key><VersionId>2</VersionId></Version></R>";
        let v = blocks(x, "Version");
        assert_eq!(v.len(), 2);
        assert_eq!(values(&v[1], "Key"), vec!["b".to_string()]);
        assert!(values(x, "Missing").is_empty());
    }

    #[test]
    fn escaping_round_trips() {
        let s = "a&b<c>\"d\"'e' & &amp;";
        assert_eq!(
            escape(s),
            "a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos; &amp; &amp;amp;"
        );
        assert_eq!(unescape(&escape(s)), s);
        assert_eq!(unescape("x&#65;&#x42;&bogus;&"), "xAB&bogus;&");
        assert_eq!(first("<K>a&amp;b</K>", "K").as_deref(), Some("a&b"));
    }
}
