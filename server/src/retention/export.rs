//! The candidate's right of access and portability: the recording and its flags, written
//! as a tar archive encrypted to the data protection officer's `age` recipient. Fragments
//! are opened in memory and go straight into the encryption: the server's disk only ever
//! holds the encrypted file.
//!
//! Inside: `manifest.json` (the attempt, its streams with their connection data, the
//! flags with their notes, the retention status, the access report) and, per stream,
//! `stream-N/NNNNNN.mp4`, its fragments in order (`cat stream-1/*.mp4 > stream-1.mp4`
//! gives a file any player reads), each fragment's thumbnail `stream-N/NNNNNN.jpg` and the
//! activity strip `stream-N/activity.json` (motion and sound per second, by fragment): all
//! the agent derived from the candidate, so that the right of access is complete.
//!
//! Every export is audited before its file is written (a failure is audited too, and the
//! partial file removed), named in the access report, and counted in the retention status.

use super::Retention;
use super::RetentionError;
use crate::db::matches_row;
use crate::db::{AttemptId, StreamId};
use crate::failure::Failure;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, Serialize)]
pub struct ExportSummary {
    pub attempt_id: AttemptId,
    pub file: String,
    pub streams: usize,
    pub fragments: usize,
    /// Fragments that failed their checks: listed in the manifest, not exported.
    pub altered: Vec<(StreamId, u32)>,
}

#[derive(Serialize)]
struct StreamManifest {
    directory: String,
    stream_id: StreamId,
    opened_at: String,
    connection: Option<crate::db::ConnectionInfo>,
    fragments: usize,
}

impl Retention {
    pub async fn export_attempt(
        &self,
        actor: &str,
        attempt_id: AttemptId,
        recipient: &str,
        out: &Path,
    ) -> Result<ExportSummary, RetentionError> {
        let recipient = age::x25519::Recipient::from_str(recipient.trim())
            .map_err(|e| RetentionError::NotAnAgeRecipient(e.to_string()))?;
        let attempt = self.attempts.get(attempt_id).await?;
        if attempt.state == crate::lifecycle::AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        let dek = self.keys.attempt_key(&attempt)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(out)
            .map_err(|e| RetentionError::ExportTarget(format!("{}: {e}", out.display())))?;
        // Audited before a byte of it is written: no export the trail does not name.
        if let Err(e) = self
            .audit
            .record(
                actor,
                "attempt_exported",
                Some(attempt_id),
                // Pseudonymous: a path or a recipient may name the person.
                serde_json::json!({ "recipient_pseudonym": self.keys.pseudonym("recipient", &recipient.to_string())?, "file_pseudonym": self.keys.pseudonym("file", &out.display().to_string())? }),
            )
            .await
        {
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
        match self
            .write_export(actor, &attempt, &dek, &recipient, file, out)
            .await
        {
            Ok(summary) => Ok(summary),
            Err(e) => {
                let _ = std::fs::remove_file(out);
                self.audit
                    .record(
                        actor,
                        "attempt_export_failed",
                        Some(attempt_id),
                        serde_json::json!({ "file_pseudonym": self.keys.pseudonym("file", &out.display().to_string())? }),
                    )
                    .await?;
                Err(e)
            }
        }
    }

    async fn write_export(
        &self,
        actor: &str,
        attempt: &crate::db::Attempt,
        dek: &protocol::AttemptKey,
        recipient: &age::x25519::Recipient,
        file: std::fs::File,
        out: &Path,
    ) -> Result<ExportSummary, RetentionError> {
        let attempt_id = attempt.id;
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(|e| anyhow::anyhow!("age: {e}"))?;
        let sealed = encryptor
            .wrap_output(std::io::BufWriter::new(file))
            .map_err(|e| anyhow::anyhow!("age: {e}"))?;
        let mut tar = tar::Builder::new(sealed);
        let connections: std::collections::HashMap<StreamId, Vec<u8>> = self
            .db
            .connections_of(attempt_id)
            .await?
            .into_iter()
            .collect();
        let (mut streams, mut fragments, mut altered) = (Vec::new(), 0, Vec::new());
        for (n, stream) in self
            .db
            .streams_of(attempt_id)
            .await?
            .into_iter()
            .enumerate()
        {
            let dir = format!("stream-{}", n + 1);
            let key = crate::keys::stream_key(dek, &attempt_id, &stream)?;
            let (mut count, mut activity) = (0, Vec::new());
            for row in self.db.chunks_of(stream.id).await? {
                let blob = self.blobs.read_chunk(attempt_id, &row).await?;
                let media =
                    match protocol::open_chunk(&key, attempt_id.into(), stream.id.into(), &blob) {
                        Ok(o) if matches_row(&o, &row) => zeroize::Zeroizing::new(o.plaintext),
                        _ => {
                            altered.push((stream.id, row.index));
                            continue;
                        }
                    };
                let Ok(payload) = protocol::decode_payload(&media) else {
                    altered.push((stream.id, row.index));
                    continue;
                };
                append(
                    &mut tar,
                    &format!("{dir}/{:06}.mp4", row.index),
                    payload.media,
                )?;
                if let Some(jpeg) = payload.thumbnail {
                    append(&mut tar, &format!("{dir}/{:06}.jpg", row.index), jpeg)?;
                }
                if let Some(a) = payload
                    .activity
                    .and_then(|a| serde_json::from_slice::<serde_json::Value>(a).ok())
                {
                    activity.push(serde_json::json!({ "fragment": row.index, "activity": a }));
                }
                count += 1;
            }
            append(
                &mut tar,
                &format!("{dir}/activity.json"),
                &serde_json::to_vec(&activity).map_err(anyhow::Error::from)?,
            )?;
            fragments += count;
            let connection = connections
                .get(&stream.id)
                .and_then(|c| crate::keys::open_connection(dek, &attempt_id, &stream.id, c).ok());
            streams.push(StreamManifest {
                directory: dir,
                stream_id: stream.id,
                opened_at: crate::clock::rfc3339(crate::clock::from_unix_ms(stream.opened_at_ms)),
                connection,
                fragments: count,
            });
        }
        let flags: Vec<serde_json::Value> = self
            .db
            .flags_of(attempt_id)
            .await?
            .into_iter()
            .map(|f| {
                let note = crate::keys::open_note(dek, &attempt_id, &f.id, &f.note)?;
                Ok(serde_json::json!({ "start_ms": f.start_ms, "end_ms": f.end_ms, "category": f.category, "severity": f.severity, "note": note }))
            })
            .collect::<Result<_, RetentionError>>()?;
        let manifest = serde_json::json!({
            "attempt_id": attempt_id, "sitting_id": attempt.sitting_id, "reference": self.keys.reference_of(&attempt),
            "consent_notice": attempt.consent_notice, "streams": streams, "flags": flags, "altered_fragments": altered,
            "retention": self.policy.attempt_retention(attempt_id).await?, "access_report": self.access_report(actor, attempt_id).await?,
            "how_to_play": "cat stream-1/*.mp4 > stream-1.mp4, for each stream",
        });
        append(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec_pretty(&manifest).map_err(anyhow::Error::from)?,
        )?;
        let sealed = tar.into_inner().map_err(io)?;
        let mut file = sealed.finish().map_err(io)?;
        file.flush().map_err(io)?;
        file.get_ref().sync_all().map_err(io)?;
        Ok(ExportSummary {
            attempt_id,
            file: out.display().to_string(),
            streams: streams.len(),
            fragments,
            altered,
        })
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<(), RetentionError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, path, data).map_err(io)
}

fn io(e: std::io::Error) -> RetentionError {
    Failure::Internal(anyhow::anyhow!("writing the export: {e}")).into()
}
