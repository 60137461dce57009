//! Text for people: logs and error messages.

/// The first `max` characters of `s`, marked when cut (for logs and error messages).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}
