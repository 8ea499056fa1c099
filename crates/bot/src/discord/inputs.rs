//! A member's attachments: downloaded from Discord's CDN, checked (decoded off the async
//! threads, a bounded number at once), and kept in the inputs folder under the job's id.

use generators::{JobId, JobRecord, LocalInput};
use poise::serenity_prelude as serenity;
use validation::attachment::{inspect, precheck, DeclaredAttachment};
use validation::Refusal;

use super::reply::internal;
use super::Data;

/// An attachment the user sent, as Discord describes it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub filename: String,
    pub content_type: Option<String>,
    pub size: u64,
    pub url: String,
}

impl From<&serenity::Attachment> for Incoming {
    fn from(a: &serenity::Attachment) -> Self {
        Incoming {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: u64::from(a.size),
            url: a.url.clone(),
        }
    }
}

/// Downloads and checks the user's attachments into the inputs folder, named after the job.
pub async fn fetch_inputs(
    data: &Data,
    job: &JobId,
    incoming: &[Incoming],
    allow_video: bool,
) -> Result<Vec<LocalInput>, String> {
    let mut rules = data.config().attachment_rules();
    rules.allow_video = allow_video;
    let dir = data.inputs_dir();
    let mut out = Vec::new();
    for (i, a) in incoming.iter().enumerate() {
        let declared = DeclaredAttachment {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            url: a.url.clone(),
        };
        let checked_url = match data.test_attachment_base() {
            // A test Discord serves its own attachments.
            Some(base) if a.url.starts_with(&base) => {
                let mut d = declared.clone();
                d.url = "https://cdn.discordapp.com/attachments/test".into();
                precheck(&d, &rules)
            }
            _ => precheck(&declared, &rules),
        };
        checked_url.map_err(|r| r.to_string())?;
        let bytes = download(data, &a.url, rules.max_bytes)
            .await
            .map_err(|e| format!("Could not download {}: {e}", a.filename))?;
        // Decoding is CPU and memory work: off the async threads, a bounded number at once.
        let permit = data
            .decodes
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| internal("waiting to check an input", &e))?;
        let (bytes, media) = {
            let rules = rules.clone();
            let declared = declared.clone();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let media = inspect(&bytes, &declared, &rules);
                (bytes, media)
            })
            .await
            .map_err(|e| internal("checking an input", &e))?
        };
        let media = media.map_err(|r: Refusal| r.to_string())?;
        let path = dir.join(format!("{}-{i}.{}", job.as_str(), media.format.extension()));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| internal("creating the inputs folder", &e))?;
        tokio::fs::write(&path, &bytes)
            .await
            .map_err(|e| internal("saving an input", &e))?;
        out.push(LocalInput {
            path,
            format: media.format,
        });
    }
    Ok(out)
}

async fn download(data: &Data, url: &str, max: u64) -> Result<Vec<u8>, String> {
    let mut resp = data
        .downloads
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.without_url().to_string())?;
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(format!(
                "it is over the {} limit",
                validation::refusal::fmt_bytes(max)
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Deletes a job's downloaded inputs (never outputs of other jobs it derived from).
pub fn remove_inputs(data: &Data, record: Option<&JobRecord>) {
    let Some(record) = record else { return };
    let dir = data.inputs_dir();
    for input in &record.spec.inputs {
        if input.path.starts_with(&dir) {
            let _ = std::fs::remove_file(&input.path);
        }
    }
}
