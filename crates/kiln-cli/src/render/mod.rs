//! Rendering shared by several commands: text only, no I/O (the printer writes it).

pub mod certs;
pub mod plan;
pub mod table;

/// `3d 4h`, `2h 5m`, `12m`, `40s` (negative: `0s`): an uptime, a time left.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_short() {
        assert_eq!(super::duration(40), "40s");
        assert_eq!(super::duration(12 * 60 + 5), "12m");
        assert_eq!(super::duration(2 * 3600 + 5 * 60), "2h 5m");
        assert_eq!(super::duration(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(super::duration(-5), "0s");
    }
}
