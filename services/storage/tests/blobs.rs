//! The blob store's contract, the same on each backend's store: a local directory
//! (embedded) and the S3-compatible bucket (distributed, the s3s-fs server
//! `scripts/test` starts). Large content goes up as a multipart upload in
//! `PART_BYTES` parts and comes back whole or by range.

use bytes::Bytes;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::blob::{BlobError, Blobs, PART_BYTES};
use futures::StreamExt;

async fn read_all(blobs: &Blobs, key: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let mut stream = blobs.read(key, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn every_blob_store_keeps_the_same_contract() {
    for backend in Backend::all() {
        let (config, _dir) = backend.config().await;
        let expected = if matches!(backend, Backend::Embedded) {
            "local"
        } else {
            "s3"
        };
        assert_eq!(config.storage.backend, expected, "{}", backend.name());
        let blobs = Blobs::from_config(&config).unwrap();
        contract(&blobs).await;
    }
}

async fn contract(blobs: &Blobs) {
    // Small blobs: put, exists, get, delete (twice is fine).
    blobs
        .put("small/a", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert!(blobs.exists("small/a").await.unwrap());
    assert_eq!(blobs.get("small/a").await.unwrap().as_ref(), b"hello");
    assert!(matches!(
        blobs.get("small/missing").await,
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        blobs.read("small/missing", None).await,
        Err(BlobError::NotFound)
    ));
    blobs.delete("small/a").await.unwrap();
    blobs.delete("small/a").await.unwrap();
    assert!(!blobs.exists("small/a").await.unwrap());

    // A multipart upload of two and a half parts, written in odd-sized chunks.
    let content: Vec<u8> = (0..(PART_BYTES * 5 / 2) as u32)
        .map(|i| (i % 253) as u8)
        .collect();
    let mut writer = blobs.writer("big/staged").await.unwrap();
    for chunk in content.chunks(700_001) {
        writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert!(
        !blobs.exists("big/staged").await.unwrap(),
        "nothing is visible before the upload finishes"
    );
    writer.finish().await.unwrap();
    assert_eq!(read_all(blobs, "big/staged", None).await, content);
    let range = PART_BYTES as u64 - 10..PART_BYTES as u64 + 10;
    assert_eq!(
        read_all(blobs, "big/staged", Some(range.clone())).await,
        &content[range.start as usize..range.end as usize],
        "a range across a part boundary"
    );

    // Rename moves the content, replacing what was at the destination.
    blobs
        .put("big/final", Bytes::from_static(b"old"))
        .await
        .unwrap();
    blobs.rename("big/staged", "big/final").await.unwrap();
    assert!(!blobs.exists("big/staged").await.unwrap());
    assert_eq!(
        read_all(blobs, "big/final", None).await.len(),
        content.len()
    );

    // An aborted upload leaves nothing.
    let mut aborted = blobs.writer("big/aborted").await.unwrap();
    aborted
        .write(Bytes::from(vec![1u8; PART_BYTES + 1]))
        .await
        .unwrap();
    aborted.abort().await.unwrap();
    assert!(!blobs.exists("big/aborted").await.unwrap());

    // Listing by prefix and age.
    let listed = blobs.older_than("big", i64::MAX).await.unwrap();
    assert_eq!(listed, vec!["big/final".to_string()]);
    assert!(blobs.older_than("big", 0).await.unwrap().is_empty());
    assert!(blobs
        .older_than("nothing-here", i64::MAX)
        .await
        .unwrap()
        .is_empty());
    blobs.delete("big/final").await.unwrap();
}
