//! Feeding an actor's output to its terminal emulator without parsing what could never be
//! seen. Under a flood the console gets a large batch of one actor's output at once; every
//! line but the last `rows + scrollback` would scroll out of the emulator's scrollback before
//! anyone looks. When the part to drop is plain text (printable characters, tabs, CR LF line
//! ends and colour changes), it is left out: its colour changes are replayed (so the
//! attributes in force are the same) and one CR LF stands for its line breaks. The screen and
//! the whole scrollback come out exactly as if every byte had been parsed (tested below
//! against a full parse). Anything else in that part (cursor movement, erasing, modes, a
//! sequence or a UTF-8 character cut at the end of the previous batch) and the batch is
//! parsed whole.
//!
//! While nobody looks at the scrollback (the pane is at its bottom), only the screen's lines
//! are kept: the scrollback is then marked stale and rebuilt from the actor's kept bytes
//! when someone scrolls back, searches or opens it in the editor (`ConsoleState::
//! keep_scrollback`). Under a flood that leaves a screenful to parse per frame, not the
//! whole scrollback.

/// What the shortcut must know about what an emulator was fed before.
#[derive(Debug, Default, Clone, Copy)]
pub struct FeedState {
    /// The last batch ended inside an escape sequence or a UTF-8 character.
    mid_sequence: bool,
    /// A scroll region was set at some point: lines then need not scroll off the top, so
    /// the shortcut is never taken again for this terminal.
    scroll_region: bool,
    /// Lines that belonged in the scrollback were left out (only the screen was kept): the
    /// scrollback must be rebuilt from the whole output before anyone reads it.
    pub scrollback_stale: bool,
}

/// Feeds `data` to the emulator of one actor's terminal. With `keep_scrollback` false, only
/// the screen is sure to come out as a full parse would make it (see the module's doc).
pub fn feed(parser: &mut vt100::Parser, state: &mut FeedState, data: &[u8], keep_scrollback: bool) {
    let (rows, _) = parser.screen().size();
    let scrollback = if keep_scrollback {
        crate::console::state::scrollback()
    } else {
        0
    };
    let keep = usize::from(rows) + scrollback + 1;
    // Only from the bottom row does every line feed scroll a line off the top.
    let at_bottom = parser.screen().cursor_position().0 + 1 == rows;
    let shortcut = !state.mid_sequence && !state.scroll_region && at_bottom;
    match shortcut.then(|| droppable(data, keep)).flatten() {
        Some((cut, colours)) => {
            parser.process(&colours);
            parser.process(b"\r\n");
            parser.process(&data[cut..]);
            state.scrollback_stale |= !keep_scrollback;
        }
        None => parser.process(data),
    }
    state.mid_sequence = ends_mid_sequence(data, state.mid_sequence);
    state.scroll_region |= sets_scroll_region(data);
}

/// Whether `data` has a CSI sequence ending in `r` (DECSTBM, setting a scroll region).
fn sets_scroll_region(data: &[u8]) -> bool {
    memchr::memchr_iter(0x1b, data).any(|at| {
        data.get(at + 1) == Some(&b'[')
            && data[at + 2..]
                .iter()
                .find(|b| (0x40..=0x7e).contains(*b))
                .is_some_and(|&end| end == b'r')
    })
}

/// Where the kept part starts (after a CR LF with `keep` line feeds after it) and the colour
/// changes of the part before it, if that part is plain text.
fn droppable(data: &[u8], keep: usize) -> Option<(usize, Vec<u8>)> {
    // The line feed `keep` line feeds before the end.
    let lf = memchr::memrchr_iter(b'\n', data).nth(keep)?;
    if lf == 0 || data[lf - 1] != b'\r' {
        return None;
    }
    let prefix = &data[..=lf];
    let mut colours = Vec::new();
    let mut i = 0;
    while i < prefix.len() {
        // Plain text up to the next ESC, checked without a branch per byte (this scan is
        // most of the cost of a skipped megabyte).
        let text_end = memchr::memchr(0x1b, &prefix[i..]).map_or(prefix.len(), |p| i + p);
        let plain = prefix[i..text_end].iter().fold(true, |ok, &b| {
            ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t') | (b == b'\r') | (b == b'\n'))
        });
        if !plain {
            return None;
        }
        i = text_end;
        if i < prefix.len() {
            // Only SGR: ESC [ digits ; : ... m
            let params = prefix[i + 1..]
                .iter()
                .position(|b| !matches!(b, b'[' | b'0'..=b'9' | b';' | b':'))?;
            let end = i + 1 + params;
            if prefix.get(i + 1) != Some(&b'[') || prefix[end] != b'm' {
                return None;
            }
            colours.extend_from_slice(&prefix[i..=end]);
            i = end + 1;
        }
    }
    Some((lf + 1, colours))
}

/// Whether `data` ends inside an escape sequence or a UTF-8 character (conservatively: when
/// unsure, yes). `before` is the same for what came before, for a batch with no ESC at all.
fn ends_mid_sequence(data: &[u8], before: bool) -> bool {
    // A UTF-8 character cut short: a lead byte among the last three with too few
    // continuation bytes after it.
    let tail = &data[data.len().saturating_sub(3)..];
    for (k, &b) in tail.iter().enumerate().rev() {
        let need = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            0x80..=0xbf => continue,
            _ => break,
        };
        if tail.len() - k < need {
            return true;
        }
        break;
    }
    let Some(esc) = memchr::memrchr(0x1b, data) else {
        // No ESC here: a sequence left open before is still open only if nothing ended it;
        // to stay simple, one batch without ESC after it does not close it.
        return before && data.iter().all(|b| !(0x40..=0x7e).contains(b));
    };
    let rest = &data[esc + 1..];
    match rest.first() {
        None => true,
        // CSI: parameters and intermediates, then a final byte.
        Some(b'[') => !rest[1..].iter().any(|b| (0x40..=0x7e).contains(b)),
        // OSC, DCS, APC, PM, SOS: open until BEL or ST.
        Some(b']' | b'P' | b'_' | b'^' | b'X') => !rest.iter().any(|&b| b == 0x07 || b == b'\\'),
        // Two-byte sequences (ESC c, ESC 7, charset selection ESC ( B ...).
        Some(b'(' | b')' | b'*' | b'+' | b'#' | b'%' | b' ') => rest.len() < 2,
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROWS: u16 = 6;

    fn everything(p: &mut vt100::Parser) -> Vec<String> {
        // Every page of scrollback (`contents` follows the scrollback offset), then the live
        // screen with its attributes and the cursor.
        let deepest = crate::console::state::SCROLLBACK;
        let mut out: Vec<String> = (0..deepest)
            .step_by(ROWS as usize)
            .chain([deepest])
            .map(|back| {
                p.screen_mut().set_scrollback(back);
                p.screen().contents()
            })
            .collect();
        p.screen_mut().set_scrollback(0);
        let s = p.screen();
        out.push(format!(
            "{:?}\n{:?}",
            s.contents_formatted(),
            s.cursor_position()
        ));
        out
    }

    /// `batches` fed to a full parse and through [`feed`], and the feed's state after.
    fn fed(
        batches: &[Vec<u8>],
        keep_scrollback: bool,
    ) -> (vt100::Parser, vt100::Parser, FeedState) {
        let scrollback = crate::console::state::SCROLLBACK;
        let mut full = vt100::Parser::new(ROWS, 20, scrollback);
        let mut fast = vt100::Parser::new(ROWS, 20, scrollback);
        let mut state = FeedState::default();
        for b in batches {
            full.process(b);
            feed(&mut fast, &mut state, b, keep_scrollback);
        }
        (full, fast, state)
    }

    fn both(batches: &[Vec<u8>]) -> (Vec<String>, Vec<String>) {
        let (mut full, mut fast, _) = fed(batches, true);
        (everything(&mut full), everything(&mut fast))
    }

    fn lines(n: usize, colour: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            if colour && i % 7 == 0 {
                out.extend_from_slice(format!("\x1b[{}m", 31 + i % 6).as_bytes());
            }
            out.extend_from_slice(format!("line {i} é\tok\r\n").as_bytes());
        }
        out
    }

    #[test]
    fn a_big_plain_batch_skips_its_head_and_looks_the_same() {
        let big = lines(5_000, true);
        let keep = usize::from(ROWS) + crate::console::state::SCROLLBACK + 1;
        assert!(droppable(&big, keep).is_some(), "the head is dropped");
        let (full, fast) = both(&[b"partial".to_vec(), big, b"tail \x1b[1mbold".to_vec()]);
        assert_eq!(full, fast);
    }

    #[test]
    fn cursor_movement_in_the_head_means_a_full_parse() {
        let mut big = b"\x1b[2J".to_vec();
        big.extend(lines(5_000, false));
        assert!(droppable(&big, 100).is_none());
        let (full, fast) = both(&[big]);
        assert_eq!(full, fast);
    }

    #[test]
    fn a_sequence_cut_between_batches_is_parsed_whole_next_time() {
        let mut first = lines(10, false);
        first.extend_from_slice(b"\x1b[3");
        let mut second = b"1mred\r\n".to_vec();
        second.extend(lines(5_000, false));
        let (full, fast) = both(&[first, second]);
        assert_eq!(full, fast);
        assert!(ends_mid_sequence(b"abc\x1b[3", false));
        assert!(ends_mid_sequence("é".as_bytes().split_at(1).0, false));
        assert!(!ends_mid_sequence(b"abc\x1b[31m", true));
    }

    #[test]
    fn a_cursor_away_from_the_bottom_or_a_scroll_region_means_a_full_parse() {
        // The screen full of long rows, the cursor homed, then a flood of short lines: in a
        // full parse the first ones overwrite the old rows only in part.
        let long = "X".repeat(19) + "\r\n";
        let mut first = long.repeat(ROWS as usize).into_bytes();
        first.extend_from_slice(b"\x1b[H");
        let mut second = b"a\r\na\r\na\r\n".to_vec();
        for i in 0..5_000 {
            second.extend_from_slice(format!("s{}\r\n", i % 10).as_bytes());
        }
        let (full, fast) = both(&[first, second.clone()]);
        assert_eq!(full, fast);
        // A scroll region, the cursor below it, then a flood.
        let mut region = long.repeat(ROWS as usize).into_bytes();
        region.extend_from_slice(b"\x1b[1;3r\x1b[6;1H");
        let (full, fast) = both(&[region, second]);
        assert_eq!(full, fast);
        assert!(sets_scroll_region(b"x\x1b[1;3rx"));
        assert!(!sets_scroll_region(b"x\x1b[31mx\x1b[2J"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_split_of_a_coloured_flood_looks_the_same(
            n in 2_000usize..6_000,
            cuts in proptest::collection::vec(0usize..1_000_000, 0..6),
            colour in any::<bool>(),
        ) {
            let data = lines(n, colour);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.sort_unstable();
            let mut batches = Vec::new();
            let mut at = 0;
            for c in cuts {
                batches.push(data[at..c.max(at)].to_vec());
                at = c.max(at);
            }
            batches.push(data[at..].to_vec());
            let (full, fast) = both(&batches);
            prop_assert_eq!(full, fast);
            let (full, fast, _) = screen_only(&batches);
            prop_assert_eq!(full, fast);
        }
    }

    /// The live screen (with attributes and cursor) after feeding `batches` keeping only the
    /// screen, next to a full parse's, and whether the scrollback was marked stale.
    fn screen_only(batches: &[Vec<u8>]) -> (String, String, bool) {
        let (full, fast, state) = fed(batches, false);
        let screen = |p: &vt100::Parser| {
            let s = p.screen();
            format!("{:?}\n{:?}", s.contents_formatted(), s.cursor_position())
        };
        (screen(&full), screen(&fast), state.scrollback_stale)
    }

    #[test]
    fn keeping_only_the_screen_looks_the_same_and_marks_the_scrollback_stale() {
        let big = lines(300, true);
        // The screen filled first: the cursor is on its bottom row, where the shortcut works.
        let (full, fast, stale) =
            screen_only(&[lines(10, false), big, b"tail \x1b[1mbold".to_vec()]);
        assert_eq!(full, fast);
        assert!(stale, "lines of the scrollback were left out");
        // Fewer lines than the screen holds: nothing is left out.
        let (full, fast, stale) = screen_only(&[lines(3, true)]);
        assert_eq!(full, fast);
        assert!(!stale);
        // Cursor movement in the head: a full parse, the scrollback stays whole.
        let mut moved = b"\x1b[2J".to_vec();
        moved.extend(lines(300, false));
        let (full, fast, stale) = screen_only(&[moved]);
        assert_eq!(full, fast);
        assert!(!stale);
    }
}
