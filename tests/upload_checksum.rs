//! Both ways of `--upload-checksum` store exactly the bytes written, on a real mount: a
//! small file (one PutObject), a file of more than one part (a multipart upload, its parts
//! streamed while it is written), and that file appended to (a multipart upload whose first
//! part is copied on the server, the rest uploaded). Each is read back through a fresh
//! mount, so from S3 and not from the first mount's cache, and through the admin's own
//! client. The `-o` form of the option is used for one of the two.

mod common;

use aws_sdk_s3::types::ChecksumMode;
use common::{Mount, Server, pattern};
use std::io::Write;

/// The CRC32C S3 keeps for `key` in bucket data, if any (read with ChecksumMode=ENABLED).
fn stored_crc32c(s: &Server, key: &str) -> Option<String> {
    let head = s.admin().head_object().bucket("data").key(key);
    let out = s.block_on(head.checksum_mode(ChecksumMode::Enabled).send());
    let out = out.unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"));
    out.checksum_crc32_c().map(str::to_owned)
}

/// The base64 CRC32C of `bytes`, as S3 writes it.
fn crc32c(bytes: &[u8]) -> String {
    let mut crc = aws_smithy_checksums::ChecksumAlgorithm::Crc32c.into_impl();
    crc.update(bytes);
    aws_smithy_types::base64::encode(&crc.finalize()[..])
}

#[test]
fn each_upload_checksum_stores_the_bytes_written() {
    let s = Server::start(&[]);
    let small = pattern(100 << 10, 1);
    let big = pattern(9 << 20, 2); // more than the 8 MiB part size: a multipart upload
    let tail = pattern(3 << 20, 3);
    let appended = [big.as_slice(), tail.as_slice()].concat();
    for (how, option) in [
        ("crc32c", ["--upload-checksum", "crc32c"]),
        ("signed-payload", ["-o", "upload_checksum=signed-payload"]),
    ] {
        let prefix = format!("ck-{how}");
        let source = format!("data:/{prefix}");
        let mut args = s.writer_args();
        args.extend(option.map(String::from));

        let m = Mount::start(&s, "alice", &source, &args).expect("mount");
        std::fs::write(m.join("small"), &small).expect("write small");
        std::fs::write(m.join("big"), &big).expect("write big");
        std::fs::write(m.join("appended"), &big).expect("write appended");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("appended"))
            .expect("open for append");
        f.write_all(&tail).expect("append");
        common::close(f).expect("close after append");
        let log = m.unmount();
        assert!(!log.contains(" ERROR "), "{how}: errors while writing:\n{log}");

        let m = Mount::start(&s, "alice", &source, &args).expect("mount again");
        for (name, want) in [("small", &small), ("big", &big), ("appended", &appended)] {
            let got = std::fs::read(m.join(name)).unwrap_or_else(|e| panic!("{how}: read {name}: {e}"));
            assert!(
                got == *want,
                "{how}: {name} read back {} bytes, not the {} written",
                got.len(),
                want.len()
            );
            let key = format!("{prefix}/{name}");
            let (body, _) = s.object("data", &key).unwrap_or_else(|| panic!("{how}: no {key}"));
            assert!(body == *want, "{how}: {key} in S3 differs from what was written");
            // What S3 kept shows what reached it: a CRC32C with crc32c (for a single PUT, the
            // one s3role sent, which S3 checked), none with signed-payload.
            let stored = stored_crc32c(&s, &key);
            match how {
                "crc32c" if name == "small" => assert_eq!(stored, Some(crc32c(want)), "{how}: {key}"),
                "crc32c" => assert!(stored.is_some(), "{how}: {key} has no CRC32C"),
                _ => assert_eq!(stored, None, "{how}: {key}"),
            }
        }
        drop(m);
    }
}
