//! Quoting untrusted text in a message: at most a bounded number of bytes, cut at a character
//! boundary with a marker saying how much was left out, so a huge header line or value in a
//! file cannot make an error message huge.

/// The most bytes of one quoted value an error message carries.
pub const QUOTE_BYTES: usize = 200;

/// `s` when it is at most `max` bytes, else its first `max` bytes (at a character boundary)
/// and `… (N more bytes)`.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end).into()
}

/// [`clip`] at [`QUOTE_BYTES`].
pub fn quote(s: &str) -> std::borrow::Cow<'_, str> {
    clip(s, QUOTE_BYTES)
}

/// The most items of a list an error message names.
pub const LIST_ITEMS: usize = 20;

/// `items` joined by `, `, each [`quote`]d, at most [`LIST_ITEMS`] of them and then
/// `… (N more)`: a file's columns or labels in an error message, whatever the file holds.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let mut out: Vec<String> = items.iter().take(LIST_ITEMS).map(|s| quote(s.as_ref()).into_owned()).collect();
    if items.len() > LIST_ITEMS {
        out.push(format!("… ({} more)", items.len() - LIST_ITEMS));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_a_marker() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é… (4 more bytes)");
        assert_eq!(quote(&"x".repeat(1 << 20)).len(), QUOTE_BYTES + "… (1048376 more bytes)".len());
        let many: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        assert_eq!(list(&many[..2]), "0, 1");
        assert!(list(&many).ends_with("19, … (5 more)"));
    }
}
