//! Text of the console's screens for search and for `$EDITOR`: every line of a vt100
//! screen with its scrollback, and a tree-wide search over every actor's recent output
//! (escape sequences left out). Pure over borrowed state.

/// Every line of `p` (scrollback first, then the screen, blank rows included, so line
/// `i` is `i` lines below the oldest), each with its trailing blanks trimmed; the view
/// offset is put back as it was.
pub fn all_lines(p: &mut vt100::Parser) -> Vec<String> {
    let keep = p.screen().scrollback();
    let (rows, cols) = p.screen().size();
    p.screen_mut().set_scrollback(usize::MAX);
    let depth = p.screen().scrollback();
    let total = depth + usize::from(rows);
    let mut out = vec![String::new(); total];
    let mut off = depth;
    loop {
        p.screen_mut().set_scrollback(off);
        for (r, text) in p.screen().rows(0, cols).enumerate() {
            let i = depth - off + r;
            if i < total {
                out[i] = text.trim_end().to_owned();
            }
        }
        if off == 0 {
            break;
        }
        off = off.saturating_sub(usize::from(rows));
    }
    p.screen_mut().set_scrollback(keep);
    out
}

/// Indexes of the lines that contain `query` (case-insensitive when it is all lower case,
/// as in less and vim's smartcase).
pub fn matches(lines: &[String], query: &str) -> Vec<usize> {
    if query.is_empty() {
        return Vec::new();
    }
    let fold = !query.chars().any(char::is_uppercase);
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            if fold {
                l.to_lowercase().contains(query)
            } else {
                l.contains(query)
            }
        })
        .map(|(i, _)| i)
        .collect()
}

/// The scrollback offset that puts line `i` of a screen with `depth` lines of scrollback
/// at the top of the view (or as near as the screen allows).
pub fn offset_showing(depth: usize, i: usize) -> usize {
    depth.saturating_sub(i)
}

/// Plain text of raw terminal output: escape sequences and carriage returns left out,
/// cut into lines.
pub fn plain_lines(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                out.push(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
            b'\r' => {}
            0x1b => {
                // CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), or one char.
                match bytes.get(i + 1) {
                    Some(b'[') => {
                        i += 2;
                        while i < bytes.len() && !(0x40..=0x7e).contains(&bytes[i]) {
                            i += 1;
                        }
                    }
                    Some(b']') => {
                        i += 2;
                        while i < bytes.len() && bytes[i] != 0x07 && bytes[i] != 0x1b {
                            i += 1;
                        }
                    }
                    _ => i += 1,
                }
            }
            b if b < 0x20 && b != b'\t' => {}
            b => line.push(b),
        }
        i += 1;
    }
    if !line.is_empty() {
        out.push(String::from_utf8_lossy(&line).into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_2000_line_scrollback_is_found() {
        let mut p = vt100::Parser::new(10, 40, 2000);
        for i in 0..2005 {
            p.process(format!("line {i}\r\n").as_bytes());
        }
        p.screen_mut().set_scrollback(3);
        let lines = all_lines(&mut p);
        assert_eq!(p.screen().scrollback(), 3, "view put back");
        // 2,000 of scrollback + the screen's rows (the last is the empty cursor line).
        assert_eq!(lines.first().map(String::as_str), Some("line 0"));
        let last = lines.iter().rposition(|l| !l.is_empty()).expect("text");
        assert_eq!(lines[last], "line 2004");
        let hit = matches(&lines, "line 15");
        assert_eq!(hit.len(), 111, "line 15, 150..=159 and 1500..=1599");
        assert_eq!(lines[hit[0]], "line 15");
        assert_eq!(matches(&lines, "LINE 15"), Vec::<usize>::new(), "smartcase");
        assert_eq!(offset_showing(2000, hit[0]), 1985);
    }

    #[test]
    fn plain_text_leaves_escapes_out() {
        let l = plain_lines(b"\x1b[31mred\x1b[0m ok\r\n\x1b]0;title\x07next\nlast");
        assert_eq!(l, vec!["red ok", "next", "last"]);
    }
}
