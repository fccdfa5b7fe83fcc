//! Metadata decompression chosen by content, not file name: gzip, xz, zstd, bzip2 or plain.

use std::io::{BufRead, BufReader, Read};

/// Wraps `input` in the decompressor its first bytes call for.
pub fn open<'a>(mut input: impl BufRead + 'a) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let head = input.fill_buf()?;
    let out: Box<dyn BufRead + 'a> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(input),
        ))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            liblzma::bufread::XzDecoder::new_multi_decoder(input),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            zstd::stream::read::Decoder::with_buffer(input)?,
        ))
    } else if head.starts_with(b"BZh") {
        Box::new(BufReader::with_capacity(
            1 << 16,
            bzip2::bufread::MultiBzDecoder::new(input),
        ))
    } else {
        Box::new(input)
    };
    Ok(out)
}

/// Reads everything, decompressed.
pub fn read_all(input: impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open(input)?.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"<metadata packages=\"0\"></metadata>\n";

    #[test]
    fn every_format_round_trips() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(TEXT).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(TEXT).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(TEXT).unwrap();
        let zst = zstd::encode_all(TEXT, 3).unwrap();
        for data in [
            gz.finish().unwrap(),
            xz.finish().unwrap(),
            bz.finish().unwrap(),
            zst,
            TEXT.to_vec(),
        ] {
            assert_eq!(read_all(&data[..]).unwrap(), TEXT);
        }
    }

    #[test]
    fn truncated_streams_are_errors() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&TEXT.repeat(100)).unwrap();
        let data = gz.finish().unwrap();
        assert!(read_all(&data[..data.len() / 2]).is_err());
        let zst = zstd::encode_all(&TEXT.repeat(100)[..], 3).unwrap();
        assert!(read_all(&zst[..zst.len() / 2]).is_err());
    }
}
