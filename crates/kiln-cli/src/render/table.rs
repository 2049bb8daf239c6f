//! Plain-text tables: columns padded to their widest cell (`kiln show`, `kiln dns`).

/// Columns padded to their widest cell, separated by `sep`; no trailing spaces.
pub fn align<const N: usize>(rows: &[[String; N]], sep: &str) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths.iter()).enumerate() {
            if i > 0 {
                line.push_str(sep);
            }
            line.push_str(c);
            line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
