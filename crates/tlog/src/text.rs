//! Places in text people write, for error messages.

/// The line (from 1) holding byte `at` of `text`. Counted over bytes, so that an offset from a
/// parser (a TOML span, say) can never fall inside a character and panic.
pub fn line_at(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_counted_whatever_the_offset() {
        let t = "a\n\u{e9}\u{e9}\nc";
        assert_eq!(super::line_at(t, 0), 1);
        assert_eq!(super::line_at(t, 3), 2, "inside the first \u{e9}");
        assert_eq!(super::line_at(t, 7), 3);
        assert_eq!(super::line_at(t, 1000), 3);
    }
}
