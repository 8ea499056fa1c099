//! One SSH connection to the Cosmos host (russh, pure Rust): key auth, the host key pinned
//! from config and never accepted blindly, keepalive and no inactivity timeout (the diffusion
//! phase is silent for minutes), commands with their output, and SFTP transfers that never
//! leave a half-written file under its final name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::OpenFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read or written per SFTP call.
const CHUNK: usize = 256 * 1024;
/// Stdout kept from a command whose output is collected.
const MAX_COLLECTED: usize = 1 << 20;

/// Where and how to connect. Holds paths, never key material, so it can be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_path: PathBuf,
    /// The host's public key, `ssh-ed25519 AAAA…` as in known_hosts (without the host name).
    pub host_key: String,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    /// Time limit of one SFTP transfer.
    pub transfer_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("cannot reach the Cosmos host {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the Cosmos host's key {got} is not the pinned key {expected}; refusing to connect")]
    HostKeyMismatch { expected: String, got: String },
    #[error("the pinned host key in the config cannot be read: {0}")]
    BadHostKey(String),
    #[error("cannot read the SSH key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the Cosmos host refused the SSH key for user {user}")]
    Auth { user: String },
    #[error("SSH to the Cosmos host failed: {0}")]
    Channel(String),
    #[error("file transfer to or from the Cosmos host failed: {0}")]
    Transfer(String),
    #[error("{0} timed out")]
    Timeout(String),
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// `None` when the channel closed without an exit status (the connection dropped).
    pub code: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Parses a pinned host key line (`ssh-ed25519 AAAA… [comment]`).
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim()).map_err(|e| e.to_string())
}

struct Pinned {
    expected: PublicKey,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let matches = key.key_data() == self.expected.key_data();
        if !matches {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(key.fingerprint(HashAlg::Sha256).to_string());
        }
        Ok(matches)
    }
}

/// An authenticated connection. Cheap to share; each command opens its own channel.
pub struct SshConn {
    handle: client::Handle<Pinned>,
}

impl std::fmt::Debug for SshConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConn").finish_non_exhaustive()
    }
}

fn channel_err(e: impl std::fmt::Display) -> SshError {
    SshError::Channel(e.to_string())
}

fn transfer_err(e: impl std::fmt::Display) -> SshError {
    SshError::Transfer(e.to_string())
}

impl SshConn {
    /// Connects, checks the host key against the pinned one, and authenticates with the key.
    pub async fn connect(cfg: &SshConfig) -> Result<SshConn, SshError> {
        let expected = parse_public_key(&cfg.host_key).map_err(SshError::BadHostKey)?;
        let key = russh::keys::load_secret_key(&cfg.key_path, None).map_err(|e| SshError::Key {
            path: cfg.key_path.clone(),
            reason: e.to_string(),
        })?;
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(cfg.keepalive),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let handler = Pinned {
            expected: expected.clone(),
            seen: seen.clone(),
        };
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let connect = client::connect(config, (cfg.host.as_str(), cfg.port), handler);
        let mut handle = match tokio::time::timeout(cfg.connect_timeout, connect).await {
            Err(_) => return Err(SshError::Timeout(format!("connecting to {addr}"))),
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                if let Some(got) = seen.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(SshError::HostKeyMismatch {
                        expected: expected.fingerprint(HashAlg::Sha256).to_string(),
                        got,
                    });
                }
                return Err(SshError::Connect {
                    addr,
                    reason: e.to_string(),
                });
            }
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(channel_err)?
            .flatten();
        let auth = handle
            .authenticate_publickey(
                cfg.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(channel_err)?;
        if !auth.success() {
            return Err(SshError::Auth {
                user: cfg.user.clone(),
            });
        }
        Ok(SshConn { handle })
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs a command and collects its output.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let code = self
            .run(command, |chunk, is_err| {
                let buf = if is_err { &mut stderr } else { &mut stdout };
                if buf.len() < MAX_COLLECTED {
                    buf.extend_from_slice(chunk);
                }
            })
            .await?;
        Ok(Output {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs a command, handing each complete stdout/stderr line to `on_line` as it arrives.
    /// Ends when the command does (its exit status) or the connection drops (`None`).
    pub async fn exec_lines(
        &self,
        command: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<Option<u32>, SshError> {
        let mut pending: Vec<u8> = Vec::new();
        let code = self
            .run(command, |chunk, _| {
                pending.extend_from_slice(chunk);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    on_line(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']));
                }
            })
            .await?;
        if !pending.is_empty() {
            on_line(String::from_utf8_lossy(&pending).trim_end());
        }
        Ok(code)
    }

    async fn run(
        &self,
        command: &str,
        mut sink: impl FnMut(&[u8], bool),
    ) -> Result<Option<u32>, SshError> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(channel_err)?;
        channel.exec(true, command).await.map_err(channel_err)?;
        let mut code = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { ref data } => sink(data, false),
                ChannelMsg::ExtendedData { ref data, .. } => sink(data, true),
                ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                _ => {}
            }
        }
        Ok(code)
    }

    async fn sftp(&self) -> Result<SftpSession, SshError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(transfer_err)?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(transfer_err)?;
        SftpSession::new(channel.into_stream())
            .await
            .map_err(transfer_err)
    }

    /// Writes `bytes` to `remote` through a temporary name, then renames it into place.
    pub async fn upload(
        &self,
        bytes: &[u8],
        remote: &str,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let work = async {
            let sftp = self.sftp().await?;
            let tmp = format!("{remote}.{:08x}.part", rand::random::<u32>());
            let mut file = sftp
                .open_with_flags(
                    &tmp,
                    OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                )
                .await
                .map_err(transfer_err)?;
            for chunk in bytes.chunks(CHUNK) {
                file.write_all(chunk).await.map_err(transfer_err)?;
            }
            file.shutdown().await.map_err(transfer_err)?;
            let _ = sftp.remove_file(remote).await;
            sftp.rename(&tmp, remote).await.map_err(transfer_err)?;
            let _ = sftp.close().await;
            Ok(())
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(SshError::Timeout(format!("uploading {remote}"))))
    }

    /// Copies a local file to `remote` (through a temporary name).
    pub async fn upload_file(
        &self,
        local: &Path,
        remote: &str,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let bytes = tokio::fs::read(local)
            .await
            .map_err(|e| SshError::Transfer(format!("cannot read {}: {e}", local.display())))?;
        self.upload(&bytes, remote, timeout).await
    }

    /// Reads `remote` into memory, at most `max` bytes; `Ok(None)` when it does not exist.
    pub async fn download(
        &self,
        remote: &str,
        max: u64,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, SshError> {
        let work = async {
            let sftp = self.sftp().await?;
            if sftp.try_exists(remote).await.map_err(transfer_err)? {
                let mut file = sftp.open(remote).await.map_err(transfer_err)?;
                let mut out = Vec::new();
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = file.read(&mut buf).await.map_err(transfer_err)?;
                    if n == 0 {
                        break;
                    }
                    if (out.len() + n) as u64 > max {
                        return Err(SshError::Transfer(format!(
                            "{remote} is larger than {max} bytes"
                        )));
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                let _ = sftp.close().await;
                Ok(Some(out))
            } else {
                Ok(None)
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(SshError::Timeout(format!("downloading {remote}"))))
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}
