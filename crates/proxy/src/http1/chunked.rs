//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally from a read buffer: chunk
//! sizes and extensions are parsed and dropped, data is handed out as it arrives (never waiting
//! for a whole chunk), trailers are read and dropped. Encoding: [`put_chunk`] and [`LAST_CHUNK`].

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line or trailer line accepted, extensions included.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted in all.
const MAX_TRAILERS: usize = 16 * 1024;

/// The last chunk, with no trailers: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Append `data` as one chunk (`data` must not be empty: an empty chunk ends the body).
pub fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    debug_assert!(!data.is_empty());
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Why a chunked body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("chunk size line longer than {MAX_LINE} bytes")]
    LongLine,
    #[error("control character in a chunk extension")]
    BadExtension,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("trailers longer than {MAX_TRAILERS} bytes")]
    LongTrailers,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body data.
    Data(Bytes),
    /// More bytes are needed.
    NeedMore,
    /// The last chunk and the trailers have been read: the body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// An incremental decoder; feed it the connection's read buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Size }
    }
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from the front of `buf`, consuming what it uses.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkedError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = parse_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Step::End);
                    }
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILERS {
                        return Err(ChunkedError::LongTrailers);
                    }
                    self.state = State::Trailers(seen);
                }
                State::Done => return Ok(Step::End),
            }
        }
    }
}

/// A line ending in CRLF (returned without it), or `None` if it has not all arrived.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, ChunkedError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(ChunkedError::BadSize);
            }
            if i > MAX_LINE {
                return Err(ChunkedError::LongLine);
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(ChunkedError::LongLine),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optionally whitespace and `;` extensions.
fn parse_size(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkedError::BadSize);
    }
    let rest = &line[digits..];
    let rest = rest.trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') {
        return Err(ChunkedError::BadSize);
    }
    // Extensions are dropped, never read: but a bare CR or a NUL in one is where two parsers
    // part ways about where the line ends (RFC 9112 §7.1.1 allows tokens and quoted strings).
    if rest.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
        return Err(ChunkedError::BadExtension);
    }
    let s = std::str::from_utf8(&line[..digits]).map_err(|_| ChunkedError::BadSize)?;
    u64::from_str_radix(s, 16).map_err(|_| ChunkedError::BadSize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed in pieces of `piece` bytes; the data and whether it ended.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool, usize), ChunkedError> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in input.chunks(piece) {
            buf.extend_from_slice(part);
            loop {
                match d.step(&mut buf)? {
                    Step::Data(b) => out.extend_from_slice(&b),
                    Step::NeedMore => break,
                    Step::End => return Ok((out, true, buf.len())),
                }
            }
        }
        Ok((out, false, buf.len()))
    }

    #[test]
    fn decodes_whole_and_byte_by_byte() {
        let body =
            b"5\r\nhello\r\n1;ext=1;q=\"a\tb\"\r\n \r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, body.len()] {
            let (data, ended, left) = decode(body, piece).unwrap();
            assert_eq!(data, b"hello 0123456789", "piece {piece}");
            assert!(ended);
            assert_eq!(left, 0);
        }
    }

    #[test]
    fn bytes_after_the_body_are_left_in_the_buffer() {
        let (data, ended, left) = decode(b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1", 100).unwrap();
        assert_eq!(data, b"abc");
        assert!(ended);
        assert_eq!(left, 8);
    }

    #[test]
    fn an_unfinished_body_is_not_ended() {
        let (data, ended, _) = decode(b"5\r\nhel", 100).unwrap();
        assert_eq!(data, b"hel");
        assert!(!ended);
        let (_, ended, _) = decode(b"0\r\n", 100).unwrap();
        assert!(!ended, "the empty line after the last chunk is missing");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (bad, want) in [
            (&b"x\r\n"[..], ChunkedError::BadSize),
            (b"5 x\r\nhello\r\n", ChunkedError::BadSize),
            (b"-5\r\n", ChunkedError::BadSize),
            (b"5\nhello\r\n", ChunkedError::BadSize),
            (b"11111111111111111\r\n", ChunkedError::BadSize),
            (b"5\r\nhelloXX", ChunkedError::MissingCrlf),
            (b"5;a\rb\r\nhello\r\n", ChunkedError::BadExtension),
            (b"5;a=\0\r\nhello\r\n", ChunkedError::BadExtension),
        ] {
            assert_eq!(
                decode(bad, 100).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b'1'; MAX_LINE + 10];
        assert_eq!(decode(&long, 100).unwrap_err(), ChunkedError::LongLine);
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        assert_eq!(decode(&long_ext, 512).unwrap_err(), ChunkedError::LongLine);
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-Trailer: 12345\r\n");
        }
        assert_eq!(
            decode(&trailers, 1000).unwrap_err(),
            ChunkedError::LongTrailers
        );
    }
}
