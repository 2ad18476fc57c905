//! Framing: a 4-byte big-endian length, then that many bytes of msgpack. Frames larger than
//! [`MAX_FRAME`] are refused before any allocation, so a peer cannot make us buffer garbage.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload accepted or sent, in bytes. REPL output larger than this is split by the
/// sender; nothing legitimate comes close.
pub const MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be read, written or understood.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed frame: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("cannot encode frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes one message as a msgpack map with named fields (no length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = rmp_serde::to_vec_named(msg)?;
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes one message payload (no length prefix).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// Reads a frame's length prefix and checks it against [`MAX_FRAME`]. `Ok(None)` is a
/// clean end of stream between frames.
pub async fn read_frame_len<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<usize>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(Some(len))
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> Result<Option<T>, FrameError> {
    let Some(len) = read_frame_len(reader).await? else {
        return Ok(None);
    };
    // Grown as bytes arrive, not allocated at the declared size: a peer that announces
    // 1 MiB and sends nothing more holds no more memory than it sent.
    let mut buf = Vec::new();
    if reader.take(len as u64).read_to_end(&mut buf).await? < len {
        return Err(FrameError::Truncated);
    }
    decode(&buf).map(Some)
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    writer.write_all(&frame_bytes(msg)?).await?;
    writer.flush().await?;
    Ok(())
}

/// Blocking twin of [`read_frame`] for threads without an async runtime (the client).
pub fn read_frame_sync<R: std::io::Read, T: DeserializeOwned>(
    reader: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    use std::io::Read as _;
    let mut buf = Vec::new();
    if reader.by_ref().take(len as u64).read_to_end(&mut buf)? < len {
        return Err(FrameError::Truncated);
    }
    decode(&buf).map(Some)
}

/// Blocking twin of [`write_frame`]; the whole frame goes out in one `write_all`.
pub fn write_frame_sync<W: std::io::Write, T: Serialize>(
    writer: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    writer.write_all(&frame_bytes(msg)?)?;
    writer.flush()?;
    Ok(())
}

/// The largest index `<= max` that is a character boundary of `s` (all of `s` if it is no
/// longer than `max`). The one place this crate cuts text to a size.
pub fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// `s` in pieces of at most `max` bytes (at least one byte each), cut only between
/// characters: how long text goes out in several frames. An empty `s` gives one empty piece.
pub fn split_utf8(s: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        // A character longer than `max` still goes out whole rather than looping.
        let cut = match floor_char_boundary(r, max) {
            0 if !r.is_empty() => r.chars().next().map_or(r.len(), char::len_utf8),
            n => n,
        };
        let (head, tail) = r.split_at(cut);
        rest = (!tail.is_empty()).then_some(tail);
        Some(head)
    })
}

/// One complete frame: length prefix and payload.
pub fn frame_bytes<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let payload = encode(msg)?;
    let mut frame = Vec::with_capacity(payload.len() + 4);
    // Cannot truncate: `encode` refused anything over MAX_FRAME (1 MiB).
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_utf8_never_cuts_a_character() {
        let s = "aé€😀".repeat(100);
        for max in [1, 2, 3, 4, 5, 7, 64, 10_000] {
            let parts: Vec<&str> = split_utf8(&s, max).collect();
            assert_eq!(parts.concat(), s);
            assert!(parts.iter().all(|p| !p.is_empty()));
            assert!(parts.iter().all(|p| p.len() <= max.max(4)));
        }
        assert_eq!(split_utf8("", 8).collect::<Vec<_>>(), vec![""]);
        assert_eq!(floor_char_boundary("é", 1), 0);
        assert_eq!(floor_char_boundary("abc", 10), 3);
    }
}
