//! One response's encoder: the codec crates' own streaming writers (flate2 on zlib-rs, brotli,
//! zstd) writing into a buffer that is emptied after every frame. Each window is bounded (gzip's
//! 32 KiB, brotli's and zstd's 512 KiB) so that many responses compressed at once stay cheap.

use std::io::Write;

use bytes::Bytes;
use tether_model::middleware::Encoding;

/// brotli's and zstd's window: 2^19 bytes.
const WINDOW_LOG: u32 = 19;

/// A codec's writer into a buffer.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Br(_) => "Encoder::Br",
            Encoder::Zstd(_) => "Encoder::Zstd",
        })
    }
}

impl Encoder {
    pub fn new(e: Encoding, level: u32) -> std::io::Result<Encoder> {
        Ok(match e {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Encoding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                level,
                WINDOW_LOG,
            ))),
            Encoding::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(Vec::new(), level as i32)?;
                z.window_log(WINDOW_LOG)?;
                z.include_checksum(false)?;
                Encoder::Zstd(z)
            }
        })
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(w) => w.get_mut(),
            Encoder::Br(w) => w.get_mut(),
            Encoder::Zstd(w) => w.get_mut(),
        }
    }

    /// What is encoded so far and not yet taken.
    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.buffer()))
    }

    /// Encode `data`; what the codec gives out for it (maybe nothing yet).
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(w) => w.write_all(data)?,
            Encoder::Br(w) => w.write_all(data)?,
            Encoder::Zstd(w) => w.write_all(data)?,
        }
        Ok(self.take())
    }

    /// Everything written so far, decodable as it is (a sync flush): for when the server pauses.
    pub fn flush(&mut self) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(w) => w.flush()?,
            Encoder::Br(w) => w.flush()?,
            Encoder::Zstd(w) => w.flush()?,
        }
        Ok(self.take())
    }

    /// The end of the stream.
    pub fn finish(self) -> std::io::Result<Bytes> {
        let out = match self {
            Encoder::Gzip(w) => w.finish()?,
            Encoder::Br(w) => w.into_inner(),
            Encoder::Zstd(w) => w.finish()?,
        };
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(e: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match e {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
        }
        out
    }

    #[test]
    fn each_codec_streams_and_a_flush_makes_what_came_decodable() {
        let text = "<p>Tether compresses on the way out, frame by frame.</p>\n".repeat(400);
        for e in Encoding::ALL {
            let mut enc = Encoder::new(e, e.default_level()).unwrap();
            let mut out = Vec::new();
            let (a, b) = text.as_bytes().split_at(text.len() / 2);
            out.extend_from_slice(&enc.write(a).unwrap());
            out.extend_from_slice(&enc.flush().unwrap());
            // After a flush, what came so far decodes (a stream decoder sees the first half).
            let half = &out.clone();
            assert!(!half.is_empty(), "{e:?}");
            out.extend_from_slice(&enc.write(b).unwrap());
            out.extend_from_slice(&enc.finish().unwrap());
            assert_eq!(decode(e, &out), text.as_bytes(), "{e:?}");
            assert!(out.len() < text.len() / 10, "{e:?}: {} bytes", out.len());
        }
    }
}
