//! Sealing + opening throughput against raw AES-256-GCM on the same buffers.
//! `cargo bench -p protocol --bench sealing`; the ratio to `raw_aes_gcm` is the figure.
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol::{
    open_chunk, verify_chunk, AttemptKey, Fragment, StreamOpener, StreamSalt, StreamSealer,
};
use uuid::Uuid;

fn bench(c: &mut Criterion) {
    let attempt = Uuid::new_v4();
    let stream = Uuid::new_v4();
    let key = AttemptKey::generate();
    let salt = StreamSalt::generate();
    // 150 KiB: a 2 s fragment at the agent's default bitrate.
    for size in [150 * 1024usize, 1024 * 1024] {
        let data = vec![0xa5u8; size];
        let mut g = c.benchmark_group("seal+open");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("raw_aes_gcm", size), &data, |b, data| {
            let cipher = Aes256Gcm::new(key.expose().into());
            let nonce = [7u8; 12];
            b.iter(|| {
                let mut buf = data.clone();
                let tag = cipher
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"aad", &mut buf)
                    .unwrap();
                cipher
                    .decrypt_in_place_detached(Nonce::from_slice(&nonce), b"aad", &mut buf, &tag)
                    .unwrap();
                buf
            })
        });
        g.bench_with_input(
            BenchmarkId::new("chunk_seal_open", size),
            &data,
            |b, data| {
                b.iter(|| {
                    let sk = key.derive_stream_key(&salt, &attempt, &stream);
                    let mut s = StreamSealer::new(sk.clone(), attempt, stream);
                    let (_, chunk) = s
                        .seal(Fragment {
                            data,
                            media_start_us: 0,
                            media_end_us: 2_000_000,
                            last: false,
                        })
                        .unwrap();
                    let mut o = StreamOpener::new(sk, attempt, stream);
                    o.open_next(&chunk).unwrap().plaintext
                })
            },
        );
        g.finish();
        // Ingest: checking a chunk's tag without decrypting, against opening it.
        let sk = key.derive_stream_key(&salt, &attempt, &stream);
        let (_, chunk) = StreamSealer::new(sk.clone(), attempt, stream)
            .seal(Fragment {
                data: &data,
                media_start_us: 0,
                media_end_us: 2_000_000,
                last: false,
            })
            .unwrap();
        let mut g = c.benchmark_group("ingest_check");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("open_chunk", size), &chunk, |b, chunk| {
            b.iter(|| open_chunk(&sk, attempt, stream, chunk).unwrap().digest)
        });
        g.bench_with_input(
            BenchmarkId::new("verify_chunk", size),
            &chunk,
            |b, chunk| b.iter(|| verify_chunk(&sk, attempt, stream, chunk).unwrap().digest),
        );
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
