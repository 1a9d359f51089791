//! Recognising and undoing the compressions the kernel build uses for its payload and modules.
//!
//! Only xz and gzip are decoded in process (Debian uses xz for the bzImage payload, and for
//! modules from Debian 13 on); the others are recognised so the error names what was found.

use std::io::Read;

/// Compression formats the kernel build can produce, identified by their leading magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xz,
    Gzip,
    Zstd,
    Lzma,
    Bzip2,
    Lz4,
    Lzo,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Xz => "xz",
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
            Format::Lzma => "lzma",
            Format::Bzip2 => "bzip2",
            Format::Lz4 => "lz4",
            Format::Lzo => "lzo",
        }
    }

    /// The magic that starts a stream of this format.
    pub fn magic(self) -> &'static [u8] {
        match self {
            Format::Xz => &[0xFD, b'7', b'z', b'X', b'Z', 0x00],
            // gzip magic plus the "deflate" method byte, which cuts down false matches.
            Format::Gzip => &[0x1F, 0x8B, 0x08],
            Format::Zstd => &[0x28, 0xB5, 0x2F, 0xFD],
            // lzma-alone: properties byte 0x5D and a dictionary size; the kernel's is 0x00800000
            // or similar, so only the first bytes are stable.
            Format::Lzma => &[0x5D, 0x00, 0x00],
            Format::Bzip2 => b"BZh",
            // The kernel uses the legacy lz4 frame.
            Format::Lz4 => &[0x02, 0x21, 0x4C, 0x18],
            Format::Lzo => &[0x89, b'L', b'Z', b'O', 0x00],
        }
    }

    /// Formats this crate can decompress.
    pub fn supported(self) -> bool {
        matches!(self, Format::Xz | Format::Gzip)
    }

    const ALL: [Format; 7] = [
        Format::Xz,
        Format::Gzip,
        Format::Zstd,
        Format::Lzma,
        Format::Bzip2,
        Format::Lz4,
        Format::Lzo,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("{format} data is not supported (only xz and gzip are)")]
    Unsupported { format: &'static str },
    #[error("{format} decompression failed")]
    Decode {
        format: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Identifies the format whose magic starts `data`.
pub fn detect(data: &[u8]) -> Option<Format> {
    Format::ALL
        .into_iter()
        .find(|f| data.starts_with(f.magic()))
}

/// Decompresses a single stream of `format` from the start of `data`. Bytes after the end of the
/// stream are ignored: the kernel appends the uncompressed size after its payload.
pub fn decompress(format: Format, data: &[u8], size_hint: usize) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::with_capacity(size_hint);
    let result = match format {
        Format::Xz => xz_single_stream(data, &mut out),
        // GzDecoder reads one member and leaves any trailing bytes alone.
        Format::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        other => {
            return Err(CompressError::Unsupported {
                format: other.name(),
            })
        }
    };
    result.map_err(|source| CompressError::Decode {
        format: format.name(),
        source,
    })?;
    Ok(out)
}

/// Decodes the first xz stream of `data`. xz2's reader cannot be used: it reports trailing
/// bytes after the stream (the kernel's appended size) as a corrupt stream.
fn xz_single_stream(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::{Error, ErrorKind};
    use xz2::stream::{Action, Status, Stream};

    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).map_err(Error::other)?;
    let start = out.len();
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(1 << 20);
        }
        let (in_before, out_before) = (stream.total_in(), out.len());
        let status = stream
            .process_vec(input, out, Action::Run)
            .map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
        // total_in grows by what this call consumed, which is at most input.len().
        let consumed = usize::try_from(stream.total_in() - in_before).unwrap_or(input.len());
        input = input.get(consumed..).unwrap_or(&[]);
        if status == Status::StreamEnd {
            return Ok(out.len() - start);
        }
        if consumed == 0 && out.len() == out_before {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "xz stream is truncated",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_with_trailing_bytes() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"payload").unwrap();
        let mut data = enc.finish().unwrap();
        data.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(detect(&data), Some(Format::Gzip));
        assert_eq!(decompress(Format::Gzip, &data, 0).unwrap(), b"payload");
    }

    #[test]
    fn xz_with_trailing_bytes() {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(b"payload").unwrap();
        let mut data = enc.finish().unwrap();
        data.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(detect(&data), Some(Format::Xz));
        assert_eq!(decompress(Format::Xz, &data, 0).unwrap(), b"payload");
    }

    #[test]
    fn truncated_xz_fails() {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&[7u8; 100_000]).unwrap();
        let data = enc.finish().unwrap();
        assert!(decompress(Format::Xz, &data[..data.len() / 2], 0).is_err());
        assert!(decompress(Format::Xz, &data[..data.len() - 1], 0).is_err());
    }

    #[test]
    fn unsupported_is_named() {
        let err = decompress(Format::Zstd, &[0x28, 0xB5, 0x2F, 0xFD], 0).unwrap_err();
        assert!(err.to_string().contains("zstd"));
        assert_eq!(detect(b"nothing"), None);
    }
}
