//! The default journal: one SQLite file (WAL mode) under the data directory.
//!
//! Opening is careful: a file that is not a SQLite database, a SQLite database that is not
//! a comfycord journal, or a damaged journal is reported as [`JournalError::Corrupt`] and left
//! exactly as it was; nothing is written to it. A journal written by a newer comfycord (a
//! higher schema version) is refused with [`JournalError::Open`].
//!
//! The file is recognised by its SQLite `application_id` (see [`APPLICATION_ID`]), so the
//! `meta` table holds only what callers put there through [`Journal::meta_set`]. The schema
//! version is `PRAGMA user_version`.
//!
//! Discord ids are `u64`; SQLite integers are `i64`. They are stored bit for bit (`as i64`),
//! so every value comes back unchanged (ids above `i64::MAX` would show as negative numbers
//! to someone reading the file with the `sqlite3` shell; Discord ids are far below that).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Journal, JournalError};
use crate::job::{JobId, JobRecord, JobSpec, JobState, Origin, SavedOutput};

/// The SQLite `application_id` that marks a file as a comfycord journal ("CFJL").
const APPLICATION_ID: i32 = 0x4346_4A4C;
/// The schema this build writes and reads (`PRAGMA user_version`).
const SCHEMA_VERSION: i32 = 2;
/// Version 1 lacked `jobs.private`; opening one adds it (and nothing else changes).
const UPGRADE_FROM_1: &str = "ALTER TABLE jobs ADD COLUMN private INTEGER NOT NULL DEFAULT 0;";
/// How long a call waits for another process or connection holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// How much of an undecodable stored value is quoted in an error.
const RAW_EXCERPT_CHARS: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY NOT NULL,
    seq         INTEGER NOT NULL UNIQUE,
    owner       INTEGER NOT NULL,
    guild       INTEGER,
    channel     INTEGER,
    message     INTEGER,
    private     INTEGER NOT NULL DEFAULT 0,
    workflow    TEXT NOT NULL,
    spec        TEXT NOT NULL,
    state       TEXT NOT NULL,
    state_json  TEXT NOT NULL,
    remote_id   TEXT,
    outputs     TEXT NOT NULL DEFAULT '[]',
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER
);
CREATE INDEX jobs_state_seq ON jobs (state, seq);
CREATE INDEX jobs_owner_seq ON jobs (owner, seq);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// Columns each table must have for the file to be usable.
const JOBS_COLUMNS: &[&str] = &[
    "id",
    "seq",
    "owner",
    "guild",
    "channel",
    "message",
    "private",
    "workflow",
    "spec",
    "state",
    "state_json",
    "remote_id",
    "outputs",
    "attempts",
    "created_ms",
    "started_ms",
    "finished_ms",
];
const META_COLUMNS: &[&str] = &["key", "value"];

/// Every table, index, view and trigger but SQLite's own.
const LIST_OBJECTS: &str =
    "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";

/// What a read needs, in the order [`StoredRow::read`] takes them.
const SELECT_JOB: &str = "SELECT id, seq, owner, guild, channel, message, spec, state_json, \
     remote_id, outputs, attempts, created_ms, started_ms, finished_ms, private FROM jobs";

/// The job journal in one SQLite file. Cheap, short, synchronous calls on one connection
/// behind a mutex; several processes (or several `SqliteJournal`s) may share a file.
pub struct SqliteJournal {
    conn: Mutex<Connection>,
    /// None for [`SqliteJournal::open_in_memory`].
    path: Option<PathBuf>,
}

impl fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &self.path {
            Some(p) => p.display().to_string(),
            None => ":memory:".to_string(),
        };
        f.debug_struct("SqliteJournal")
            .field("path", &place)
            .finish_non_exhaustive()
    }
}

impl SqliteJournal {
    /// Opens the journal at `path`, creating the file (and its folders) if missing.
    ///
    /// Errors: [`JournalError::Corrupt`] when the file is not a SQLite database, is another
    /// program's database, or fails SQLite's quick check; the file is then left untouched.
    /// [`JournalError::Open`] when it cannot be read or created, or was written by a newer
    /// comfycord.
    pub fn open(path: &Path) -> Result<SqliteJournal, JournalError> {
        let open_err = |reason: String| JournalError::Open {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_err(format!(
                    "its folder {} cannot be created: {e}",
                    parent.display()
                ))
            })?;
        }
        let has_content = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(open_err("it is a folder, not a file".into())),
            Ok(m) => m.len() > 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(open_err(format!("it cannot be read: {e}"))),
        };
        if has_content {
            // Before SQLite sees the file at all: anything without the SQLite header is not
            // ours, and is not touched.
            check_header(path)?;
        }
        // No SQLITE_OPEN_URI: the path is a file name, never a `file:` URI.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| open_failure(path, "it cannot be opened", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_failure(path, "the busy timeout cannot be set", e))?;
        if has_content {
            quick_check(&conn, path)?;
        }
        // Read-only checks first: nothing below writes unless the file is empty or ours.
        classify(&conn, path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| open_failure(path, "WAL mode cannot be turned on", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %path.display(),
                mode,
                "the job journal is not in WAL mode (the file system may not support it)"
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_failure(path, "synchronous=NORMAL cannot be set", e))?;
        let mut conn = conn;
        create_schema_if_new(&mut conn, path)?;
        Ok(SqliteJournal {
            conn: Mutex::new(conn),
            path: Some(path.to_path_buf()),
        })
    }

    /// A journal that lives in memory only (for tests).
    pub fn open_in_memory() -> Result<SqliteJournal, JournalError> {
        let path = Path::new(":memory:");
        let mut conn = Connection::open_in_memory()
            .map_err(|e| open_failure(path, "it cannot be created", e))?;
        create_schema_if_new(&mut conn, path)?;
        Ok(SqliteJournal {
            conn: Mutex::new(conn),
            path: None,
        })
    }

    /// The file, or None for an in-memory journal.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        // A panic elsewhere while holding the lock leaves the connection itself consistent
        // (every write is one statement or one transaction), so keep going.
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Refuses a non-empty file that does not start with the SQLite header.
fn check_header(path: &Path) -> Result<(), JournalError> {
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut head))
        .map_err(|e| JournalError::Open {
            path: path.to_path_buf(),
            reason: format!("it cannot be read: {e}"),
        })?;
    if head.as_slice() == SQLITE_HEADER {
        Ok(())
    } else {
        Err(corrupt(
            path,
            "it is not a SQLite database: the file does not start with the SQLite header",
        ))
    }
}

/// SQLite's `PRAGMA quick_check`: the pages and indexes are readable and consistent.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let ctx = "SQLite cannot read it";
    let mut stmt = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|e| open_failure(path, ctx, e))?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
        .map_err(|e| open_failure(path, ctx, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(())
    } else {
        Err(corrupt(
            path,
            &format!("SQLite's integrity check failed: {}", problems.join("; ")),
        ))
    }
}

/// What an openable file holds.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A new, empty database: the schema is to be created.
    Empty,
    /// A comfycord journal of this build's schema version.
    Journal,
    /// A comfycord journal of schema version 1, to be upgraded.
    Version1,
}

/// Reads (never writes) what the database is. Anything but an empty database or a journal
/// this build understands is an error.
fn classify(conn: &Connection, path: &Path) -> Result<Found, JournalError> {
    let ctx = "its contents cannot be read";
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| open_failure(path, ctx, e))?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_failure(path, ctx, e))?;
    let objects: Vec<String> = conn
        .prepare(LIST_OBJECTS)
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| open_failure(path, ctx, e))?;

    if app_id == APPLICATION_ID {
        if version > SCHEMA_VERSION {
            return Err(JournalError::Open {
                path: path.to_path_buf(),
                reason: format!(
                    "it was written by a newer comfycord (journal schema version {version}; this \
                     build knows up to version {SCHEMA_VERSION}); upgrade comfycord, or move the \
                     file aside to start with an empty journal"
                ),
            });
        }
        if version == 1 {
            let v1: Vec<&str> = JOBS_COLUMNS
                .iter()
                .copied()
                .filter(|c| *c != "private")
                .collect();
            check_columns(conn, path, "jobs", &v1)?;
            check_columns(conn, path, "meta", META_COLUMNS)?;
            return Ok(Found::Version1);
        }
        if version < SCHEMA_VERSION {
            return Err(corrupt(
                path,
                &format!("it is marked as a comfycord journal but has schema version {version}"),
            ));
        }
        check_columns(conn, path, "jobs", JOBS_COLUMNS)?;
        check_columns(conn, path, "meta", META_COLUMNS)?;
        return Ok(Found::Journal);
    }
    if app_id != 0 {
        return Err(corrupt(
            path,
            &format!("it is a SQLite database of another program (application id {app_id:#010x})"),
        ));
    }
    if objects.is_empty() && version == 0 {
        return Ok(Found::Empty);
    }
    let listed = if objects.is_empty() {
        format!("it has user_version {version} but no tables")
    } else {
        format!("it has {}", objects.join(", "))
    };
    Err(corrupt(
        path,
        &format!("it is a SQLite database but not a comfycord journal: {listed}"),
    ))
}

fn check_columns(
    conn: &Connection,
    path: &Path,
    table: &str,
    wanted: &[&str],
) -> Result<(), JournalError> {
    let have: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .and_then(|mut s| {
            s.query_map([table], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| open_failure(path, "its tables cannot be read", e))?;
    if have.is_empty() {
        return Err(corrupt(path, &format!("the {table} table is missing")));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !have.iter().any(|h| h == w))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(corrupt(
            path,
            &format!(
                "the {table} table lacks the column(s) {}",
                missing.join(", ")
            ),
        ))
    }
}

/// Creates the tables on an empty database, in one transaction that holds the write lock,
/// so two processes opening a new file at once cannot both create them.
fn create_schema_if_new(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let ctx = "the journal tables cannot be created";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| open_failure(path, ctx, e))?;
    match classify(&tx, path)? {
        Found::Empty => tx
            .execute_batch(SCHEMA)
            .and_then(|()| tx.pragma_update(None, "application_id", APPLICATION_ID))
            .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|e| open_failure(path, ctx, e))?,
        Found::Version1 => tx
            .execute_batch(UPGRADE_FROM_1)
            .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|e| open_failure(path, "the journal cannot be upgraded", e))?,
        Found::Journal => {}
    }
    tx.commit().map_err(|e| open_failure(path, ctx, e))
}

fn corrupt(path: &Path, reason: &str) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// SQLite's "not a database" and "malformed" mean a damaged file; anything else (permissions,
/// a full disk, a lock held too long) means it could not be opened now.
fn open_failure(path: &Path, context: &str, e: rusqlite::Error) -> JournalError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            corrupt(path, &format!("{context}: {e}"))
        }
        _ => JournalError::Open {
            path: path.to_path_buf(),
            reason: format!("{context}: {e}"),
        },
    }
}

fn sql_err(e: rusqlite::Error, context: fmt::Arguments<'_>) -> JournalError {
    JournalError::Storage(format!("{context}: {e}"))
}

fn encode<T: Serialize + ?Sized>(
    id: &JobId,
    what: &str,
    value: &T,
) -> Result<String, JournalError> {
    serde_json::to_string(value)
        .map_err(|e| JournalError::Storage(format!("job {id}: its {what} cannot be stored: {e}")))
}

fn decode<T: DeserializeOwned>(id: &str, what: &str, raw: &str) -> Result<T, JournalError> {
    serde_json::from_str(raw).map_err(|e| {
        let mut shown: String = raw.chars().take(RAW_EXCERPT_CHARS).collect();
        if shown.len() < raw.len() {
            shown.push('…');
        }
        JournalError::Storage(format!(
            "job {id}: the stored {what} cannot be read ({e}); it is: {shown}"
        ))
    })
}

/// A `jobs` row as stored, before its JSON columns are decoded.
struct StoredRow {
    id: String,
    seq: i64,
    owner: i64,
    guild: Option<i64>,
    channel: Option<i64>,
    message: Option<i64>,
    spec: String,
    state_json: String,
    remote_id: Option<String>,
    outputs: String,
    attempts: i64,
    created_ms: i64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    private: i64,
}

impl StoredRow {
    /// Reads a row of [`SELECT_JOB`].
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
        Ok(StoredRow {
            id: r.get(0)?,
            seq: r.get(1)?,
            owner: r.get(2)?,
            guild: r.get(3)?,
            channel: r.get(4)?,
            message: r.get(5)?,
            spec: r.get(6)?,
            state_json: r.get(7)?,
            remote_id: r.get(8)?,
            outputs: r.get(9)?,
            attempts: r.get(10)?,
            created_ms: r.get(11)?,
            started_ms: r.get(12)?,
            finished_ms: r.get(13)?,
            private: r.get(14)?,
        })
    }

    fn decode(self) -> Result<JobRecord, JournalError> {
        let spec: JobSpec = decode(&self.id, "spec", &self.spec)?;
        let state: JobState = decode(&self.id, "state", &self.state_json)?;
        let outputs: Vec<SavedOutput> = decode(&self.id, "outputs", &self.outputs)?;
        let attempts = u32::try_from(self.attempts).map_err(|_| {
            JournalError::Storage(format!(
                "job {}: the stored attempt count {} is out of range",
                self.id, self.attempts
            ))
        })?;
        Ok(JobRecord {
            id: JobId(self.id),
            seq: self.seq,
            spec,
            origin: Origin {
                owner: self.owner as u64,
                guild: self.guild.map(|v| v as u64),
                channel: self.channel.map(|v| v as u64),
                message: self.message.map(|v| v as u64),
                private: self.private != 0,
            },
            state,
            remote_id: self.remote_id,
            outputs,
            attempts,
            created_ms: self.created_ms,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
        })
    }
}

fn query_jobs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: fmt::Arguments<'_>,
) -> Result<Vec<JobRecord>, JournalError> {
    let rows: Vec<StoredRow> = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params, StoredRow::read)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| sql_err(e, context))?;
    rows.into_iter().map(StoredRow::decode).collect()
}

/// An UPDATE of one job: UnknownJob when no row has that id.
fn update_job(
    conn: &Connection,
    id: &JobId,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<(), JournalError> {
    let changed = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(|e| sql_err(e, format_args!("job {id} cannot be updated")))?;
    if changed == 0 {
        Err(JournalError::UnknownJob(id.clone()))
    } else {
        Ok(())
    }
}

impl Journal for SqliteJournal {
    fn insert(&self, record: &JobRecord) -> Result<i64, JournalError> {
        let id = &record.id;
        let spec = encode(id, "spec", &record.spec)?;
        let state_json = encode(id, "state", &record.state)?;
        let outputs = encode(id, "outputs", &record.outputs)?;
        let o = &record.origin;
        self.with(|conn| {
            // One statement: the seq is computed under the write lock. Re-inserting an id
            // replaces that job (with a new seq), as the in-memory journal does.
            conn.prepare_cached(
                "INSERT OR REPLACE INTO jobs (id, seq, owner, guild, channel, message, \
                 workflow, spec, state, state_json, remote_id, outputs, attempts, created_ms, \
                 started_ms, finished_ms, private) \
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?2, ?3, ?4, ?5, \
                 ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
                 RETURNING seq",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        id.as_str(),
                        o.owner as i64,
                        o.guild.map(|v| v as i64),
                        o.channel.map(|v| v as i64),
                        o.message.map(|v| v as i64),
                        record.spec.workflow,
                        spec,
                        record.state.name(),
                        state_json,
                        record.remote_id,
                        outputs,
                        i64::from(record.attempts),
                        record.created_ms,
                        record.started_ms,
                        record.finished_ms,
                        i64::from(o.private),
                    ],
                    |r| r.get::<_, i64>(0),
                )
            })
            .map_err(|e| sql_err(e, format_args!("job {id} cannot be saved")))
        })
    }

    fn set_state(&self, id: &JobId, state: &JobState, at_ms: i64) -> Result<(), JournalError> {
        let state_json = encode(id, "state", state)?;
        let starts = matches!(state, JobState::Running { .. });
        let ends = matches!(
            state,
            JobState::Finished | JobState::Failed { .. } | JobState::Cancelled
        );
        self.with(|conn| {
            update_job(
                conn,
                id,
                "UPDATE jobs SET state = ?2, state_json = ?3, \
                 started_ms = CASE WHEN ?4 AND started_ms IS NULL THEN ?6 ELSE started_ms END, \
                 finished_ms = CASE WHEN ?5 THEN ?6 ELSE finished_ms END \
                 WHERE id = ?1",
                params![id.as_str(), state.name(), state_json, starts, ends, at_ms],
            )
        })
    }

    fn set_remote(
        &self,
        id: &JobId,
        remote_id: Option<&str>,
        attempts: u32,
    ) -> Result<(), JournalError> {
        self.with(|conn| {
            update_job(
                conn,
                id,
                "UPDATE jobs SET remote_id = ?2, attempts = ?3 WHERE id = ?1",
                params![id.as_str(), remote_id, i64::from(attempts)],
            )
        })
    }

    fn finish(&self, id: &JobId, outputs: &[SavedOutput], at_ms: i64) -> Result<(), JournalError> {
        let outputs = encode(id, "outputs", outputs)?;
        let state = JobState::Finished;
        let state_json = encode(id, "state", &state)?;
        self.with(|conn| {
            update_job(
                conn,
                id,
                "UPDATE jobs SET outputs = ?2, state = ?3, state_json = ?4, finished_ms = ?5 \
                 WHERE id = ?1",
                params![id.as_str(), outputs, state.name(), state_json, at_ms],
            )
        })
    }

    fn mark_delivered(&self, id: &JobId) -> Result<bool, JournalError> {
        let delivered = JobState::Delivered;
        let state_json = encode(id, "state", &delivered)?;
        self.with(|conn| {
            // One conditional UPDATE: of any number of callers (threads or processes), only
            // the one that changes the row gets true.
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET state = ?2, state_json = ?3 \
                     WHERE id = ?1 AND state = 'finished'",
                )
                .and_then(|mut s| s.execute(params![id.as_str(), delivered.name(), state_json]))
                .map_err(|e| sql_err(e, format_args!("job {id} cannot be marked delivered")))?;
            if changed > 0 {
                return Ok(true);
            }
            let exists = conn
                .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
                .and_then(|mut s| s.exists([id.as_str()]))
                .map_err(|e| sql_err(e, format_args!("job {id} cannot be read")))?;
            if exists {
                Ok(false)
            } else {
                Err(JournalError::UnknownJob(id.clone()))
            }
        })
    }

    fn get(&self, id: &JobId) -> Result<Option<JobRecord>, JournalError> {
        self.with(|conn| {
            let jobs = query_jobs(
                conn,
                &format!("{SELECT_JOB} WHERE id = ?1"),
                [id.as_str()],
                format_args!("job {id} cannot be read"),
            )?;
            Ok(jobs.into_iter().next())
        })
    }

    fn unfinished(&self) -> Result<Vec<JobRecord>, JournalError> {
        self.with(|conn| {
            query_jobs(
                conn,
                &format!(
                    "{SELECT_JOB} WHERE state IN ('waiting', 'running', 'finished') ORDER BY seq"
                ),
                [],
                format_args!("the unfinished jobs cannot be listed"),
            )
        })
    }

    fn recent_for_owner(
        &self,
        owner: u64,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRecord>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.with(|conn| {
            query_jobs(
                conn,
                &format!("{SELECT_JOB} WHERE owner = ?1 ORDER BY seq DESC LIMIT ?2 OFFSET ?3"),
                params![owner as i64, limit, offset],
                format_args!("the jobs of user {owner} cannot be listed"),
            )
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.with(|conn| {
            conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
                .and_then(|mut s| s.query_row([key], |r| r.get::<_, String>(0)).optional())
                .map_err(|e| sql_err(e, format_args!("the journal value {key:?} cannot be read")))
        })
    }

    fn meta_set(&self, key: &str, value: &str) -> Result<(), JournalError> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute([key, value]))
            .map(drop)
            .map_err(|e| sql_err(e, format_args!("the journal value {key:?} cannot be saved")))
        })
    }

    fn meta_delete(&self, key: &str) -> Result<(), JournalError> {
        self.with(|conn| {
            conn.prepare_cached("DELETE FROM meta WHERE key = ?1")
                .and_then(|mut s| s.execute([key]))
                .map(drop)
                .map_err(|e| {
                    sql_err(
                        e,
                        format_args!("the journal value {key:?} cannot be removed"),
                    )
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};

    use serde_json::json;

    use super::*;
    use crate::job::{InputFile, OutputKind};
    use crate::journal::MemoryJournal;

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "comfycord-journal-{name}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn record(id: &str, owner: u64, created_ms: i64) -> JobRecord {
        let values =
            json!({"prompt": format!("a cat for {id}"), "seed": 42, "cfg": 7.5, "hires": true});
        JobRecord {
            id: JobId(id.to_string()),
            seq: 999, // ignored: the journal assigns it
            spec: JobSpec {
                workflow: "txt2img".into(),
                values: values.as_object().unwrap().clone(),
                inputs: vec![InputFile {
                    param: "image".into(),
                    path: PathBuf::from("/data/inputs/ä cat.png"),
                    mime: "image/png".into(),
                }],
                parent: Some(JobId("00000000000000aa".into())),
                sources: [("steps".to_string(), crate::job::ValueSource::Member)].into(),
                templates: Default::default(),
            },
            origin: Origin {
                owner,
                guild: Some(1_100_000_000_000_000_001),
                channel: Some(1_100_000_000_000_000_002),
                message: None,
                private: true,
            },
            state: JobState::Waiting,
            remote_id: None,
            outputs: vec![],
            attempts: 0,
            created_ms,
            started_ms: None,
            finished_ms: None,
        }
    }

    fn outputs() -> Vec<SavedOutput> {
        vec![
            SavedOutput {
                path: PathBuf::from("/data/out/1.png"),
                kind: OutputKind::Image,
                bytes: 123_456,
                sidecar: Some(PathBuf::from("/data/out/1.json")),
            },
            SavedOutput {
                path: PathBuf::from("/data/out/2.mp4"),
                kind: OutputKind::Video,
                bytes: 9_000_000_000,
                sidecar: None,
            },
        ]
    }

    fn id(s: &str) -> JobId {
        JobId(s.to_string())
    }

    fn get(j: &dyn Journal, s: &str) -> JobRecord {
        j.get(&id(s)).unwrap().unwrap()
    }

    fn ids(v: &[JobRecord]) -> Vec<&str> {
        v.iter().map(|r| r.id.as_str()).collect()
    }

    fn assert_unknown<T: fmt::Debug>(r: Result<T, JournalError>, missing: &JobId) {
        match r {
            Err(JournalError::UnknownJob(got)) => assert_eq!(&got, missing),
            other => panic!("expected UnknownJob({missing}), got {other:?}"),
        }
    }

    /// Every method and edge of the [`Journal`] contract; run against each implementation.
    fn exercise(j: &dyn Journal) {
        // Empty.
        let missing = id("ffffffffffffffff");
        assert!(j.get(&missing).unwrap().is_none());
        assert!(j.unfinished().unwrap().is_empty());
        assert!(j.recent_for_owner(1, 10, 0).unwrap().is_empty());
        assert_eq!(j.meta_get("client_id").unwrap(), None);

        // Insert: seq assigned (record's seq ignored), strictly increasing, returned.
        let big_owner = u64::MAX - 1; // beyond i64: must survive storage unchanged
        let mut seqs = vec![];
        for (name, owner, at) in [("a", 1, 10), ("b", 2, 11), ("c", 1, 12), ("d", 1, 13)] {
            let seq = j.insert(&record(name, owner, at)).unwrap();
            assert_ne!(seq, 999);
            assert_eq!(get(j, name).seq, seq);
            seqs.push(seq);
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let mut expected_a = record("a", 1, 10);
        expected_a.seq = seqs[0];
        assert_eq!(get(j, "a"), expected_a, "round trip of every field");

        // Updates of a missing job.
        assert_unknown(j.set_state(&missing, &JobState::Cancelled, 1), &missing);
        assert_unknown(j.set_remote(&missing, Some("x"), 1), &missing);
        assert_unknown(j.finish(&missing, &outputs(), 1), &missing);
        assert_unknown(j.mark_delivered(&missing), &missing);
        assert!(j.get(&missing).unwrap().is_none());

        // Running stamps started_ms once; later moves keep it.
        let gpu = |b: &str| JobState::Running { backend: b.into() };
        j.set_state(&id("a"), &gpu("gpu1"), 100).unwrap();
        let a = get(j, "a");
        assert_eq!(
            (a.state, a.started_ms, a.finished_ms),
            (gpu("gpu1"), Some(100), None)
        );
        j.set_state(&id("a"), &gpu("gpu2"), 150).unwrap();
        let a = get(j, "a");
        assert_eq!((a.state, a.started_ms), (gpu("gpu2"), Some(100)));
        j.set_state(&id("a"), &JobState::Waiting, 160).unwrap();
        let a = get(j, "a");
        assert_eq!(
            (a.state, a.started_ms, a.finished_ms),
            (JobState::Waiting, Some(100), None)
        );
        j.set_state(&id("a"), &gpu("gpu1"), 170).unwrap();
        assert_eq!(get(j, "a").started_ms, Some(100));

        // Remote id and attempts.
        j.set_remote(&id("a"), Some("prompt-1"), 1).unwrap();
        let a = get(j, "a");
        assert_eq!((a.remote_id.as_deref(), a.attempts), (Some("prompt-1"), 1));
        j.set_remote(&id("a"), None, 2).unwrap();
        let a = get(j, "a");
        assert_eq!((a.remote_id, a.attempts), (None, 2));
        j.set_remote(&id("a"), Some("prompt-2"), u32::MAX).unwrap();
        assert_eq!(get(j, "a").attempts, u32::MAX);
        j.set_remote(&id("a"), Some("prompt-2"), 2).unwrap();

        // Only a finished job can be delivered.
        assert!(!j.mark_delivered(&id("a")).unwrap());
        assert_eq!(get(j, "a").state, gpu("gpu1"));
        assert!(!j.mark_delivered(&id("b")).unwrap());
        assert_eq!(get(j, "b").state, JobState::Waiting);

        // Finish: outputs, state and time together.
        j.finish(&id("a"), &outputs(), 200).unwrap();
        let a = get(j, "a");
        assert_eq!(a.state, JobState::Finished);
        assert_eq!(a.outputs, outputs());
        assert_eq!((a.started_ms, a.finished_ms), (Some(100), Some(200)));
        assert_eq!((a.remote_id.as_deref(), a.attempts), (Some("prompt-2"), 2));
        assert_eq!(ids(&j.unfinished().unwrap()), ["a", "b", "c", "d"]);

        // Failed and Cancelled stamp finished_ms and leave the unfinished list.
        let failed = JobState::Failed {
            reason: "ComfyUI said: out of memory".into(),
        };
        j.set_state(&id("c"), &failed, 300).unwrap();
        let c = get(j, "c");
        assert_eq!(
            (&c.state, c.started_ms, c.finished_ms),
            (&failed, None, Some(300))
        );
        j.set_state(&id("d"), &JobState::Cancelled, 310).unwrap();
        assert_eq!(get(j, "d").finished_ms, Some(310));
        assert_eq!(ids(&j.unfinished().unwrap()), ["a", "b"]);

        // Delivered exactly once.
        assert!(j.mark_delivered(&id("a")).unwrap());
        assert!(!j.mark_delivered(&id("a")).unwrap());
        let a = get(j, "a");
        assert_eq!(a.state, JobState::Delivered);
        assert_eq!((a.outputs, a.finished_ms), (outputs(), Some(200)));
        assert_eq!(ids(&j.unfinished().unwrap()), ["b"]);
        assert!(!j.mark_delivered(&id("c")).unwrap());
        assert_eq!(get(j, "c").state, failed);
        assert!(!j.mark_delivered(&id("d")).unwrap());

        // Finished through set_state; Delivered through set_state stamps nothing.
        j.set_state(&id("b"), &JobState::Finished, 400).unwrap();
        let b = get(j, "b");
        assert_eq!(
            (b.state, b.started_ms, b.finished_ms),
            (JobState::Finished, None, Some(400))
        );
        assert_eq!(ids(&j.unfinished().unwrap()), ["b"]);
        j.set_state(&id("b"), &JobState::Delivered, 500).unwrap();
        assert_eq!(get(j, "b").finished_ms, Some(400));
        assert!(!j.mark_delivered(&id("b")).unwrap());
        assert!(j.unfinished().unwrap().is_empty());

        // Newest first, with paging.
        let page = |owner, limit, offset| {
            ids(&j.recent_for_owner(owner, limit, offset).unwrap())
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(page(1, 10, 0), ["d", "c", "a"]);
        assert_eq!(page(1, 2, 0), ["d", "c"]);
        assert_eq!(page(1, 2, 2), ["a"]);
        assert!(page(1, 2, 3).is_empty());
        assert!(page(1, 0, 0).is_empty());
        assert_eq!(page(1, usize::MAX, 1), ["c", "a"]);
        assert!(page(1, 1, usize::MAX).is_empty());
        assert_eq!(page(2, 10, 0), ["b"]);
        assert!(page(3, 10, 0).is_empty());

        // A big owner id, and seq keeps growing.
        let seq_e = j.insert(&record("e", big_owner, 20)).unwrap();
        assert!(seq_e > seqs[3]);
        assert_eq!(get(j, "e").origin.owner, big_owner);
        assert_eq!(page(big_owner, 10, 0), ["e"]);
        assert_eq!(ids(&j.unfinished().unwrap()), ["e"]);

        // Re-inserting an id replaces that job, with a new seq.
        let mut again = record("b", 2, 30);
        again.spec.workflow = "upscale".into();
        let seq_b = j.insert(&again).unwrap();
        assert!(seq_b > seq_e);
        let b = get(j, "b");
        assert_eq!(
            (b.seq, b.spec.workflow.as_str(), b.state),
            (seq_b, "upscale", JobState::Waiting)
        );
        assert_eq!(page(2, 10, 0), ["b"]);
        assert_eq!(ids(&j.unfinished().unwrap()), ["e", "b"]);

        // Meta: upsert.
        j.meta_set("client_id", "one").unwrap();
        assert_eq!(j.meta_get("client_id").unwrap().as_deref(), Some("one"));
        j.meta_set("client_id", "two").unwrap();
        assert_eq!(j.meta_get("client_id").unwrap().as_deref(), Some("two"));
        j.meta_set("empty", "").unwrap();
        assert_eq!(j.meta_get("empty").unwrap().as_deref(), Some(""));
        j.meta_set("ünïcode 🎨", "välue ✓").unwrap();
        assert_eq!(
            j.meta_get("ünïcode 🎨").unwrap().as_deref(),
            Some("välue ✓")
        );
        assert_eq!(j.meta_get("other").unwrap(), None);
        assert_eq!(j.meta_get("schema").unwrap(), None);
        j.meta_delete("client_id").unwrap();
        assert_eq!(j.meta_get("client_id").unwrap(), None);
        j.meta_delete("never-there").unwrap();
    }

    #[test]
    fn memory_journal_behaviour() {
        exercise(&MemoryJournal::new());
    }

    #[test]
    fn sqlite_journal_behaviour() {
        exercise(&SqliteJournal::open_in_memory().unwrap());
    }

    #[test]
    fn sqlite_file_journal_behaviour() {
        let dir = TempDir::new("behaviour");
        exercise(&SqliteJournal::open(&dir.file("journal.db")).unwrap());
    }

    #[test]
    fn is_send_sync_and_debug_shows_no_data() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<SqliteJournal>();
        let j = SqliteJournal::open_in_memory().unwrap();
        j.insert(&record("0123456789abcdef", 1, 1)).unwrap();
        j.meta_set("token", "secret-value").unwrap();
        let shown = format!("{j:?}");
        assert!(shown.contains(":memory:"), "{shown}");
        assert!(
            !shown.contains("0123456789abcdef") && !shown.contains("secret-value"),
            "{shown}"
        );
        assert_eq!(j.path(), None);
    }

    #[test]
    fn persists_across_reopen() {
        let dir = TempDir::new("reopen");
        // Folders are created as needed.
        let path = dir.file("data/deeper/journal.db");
        let (a, b) = {
            let j = SqliteJournal::open(&path).unwrap();
            assert_eq!(j.path(), Some(path.as_path()));
            j.insert(&record("a", 7, 10)).unwrap();
            j.insert(&record("b", 7, 11)).unwrap();
            j.insert(&record("c", 7, 12)).unwrap();
            j.set_state(
                &id("a"),
                &JobState::Running {
                    backend: "gpu1".into(),
                },
                20,
            )
            .unwrap();
            j.set_remote(&id("a"), Some("prompt-a"), 1).unwrap();
            j.finish(&id("a"), &outputs(), 30).unwrap();
            j.set_state(&id("c"), &JobState::Cancelled, 40).unwrap();
            j.meta_set("client_id", "abc").unwrap();
            (get(&j, "a"), get(&j, "b"))
        };
        assert!(path.is_file());

        let j = SqliteJournal::open(&path).unwrap();
        let unfinished = j.unfinished().unwrap();
        assert_eq!(unfinished, [a.clone(), b]);
        assert_eq!(unfinished[0].outputs, outputs());
        assert_eq!(
            (unfinished[0].started_ms, unfinished[0].finished_ms),
            (Some(20), Some(30))
        );
        assert_eq!(j.meta_get("client_id").unwrap().as_deref(), Some("abc"));
        assert!(j.insert(&record("d", 7, 13)).unwrap() > get(&j, "c").seq);
        assert!(j.mark_delivered(&a.id).unwrap());

        // WAL and synchronous=NORMAL are in force.
        let conn = j.conn.lock().unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn an_empty_file_becomes_a_journal() {
        let dir = TempDir::new("empty");
        let path = dir.file("journal.db");
        std::fs::write(&path, b"").unwrap();
        let j = SqliteJournal::open(&path).unwrap();
        j.insert(&record("a", 1, 1)).unwrap();
        drop(j);
        assert_eq!(
            SqliteJournal::open(&path)
                .unwrap()
                .unfinished()
                .unwrap()
                .len(),
            1
        );
    }

    /// Opening must fail with Corrupt and leave the file byte for byte as it was.
    fn assert_corrupt_untouched(path: &Path, reason_has: &str) {
        let before = std::fs::read(path).unwrap();
        let err = SqliteJournal::open(path).unwrap_err();
        match &err {
            JournalError::Corrupt { path: p, reason } => {
                assert_eq!(p, path);
                assert!(
                    reason.contains(reason_has),
                    "{reason:?} lacks {reason_has:?}"
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let shown = err.to_string();
        assert!(shown.contains("move it aside"), "{shown}");
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "the file was modified"
        );
    }

    #[test]
    fn garbage_file_is_corrupt_and_untouched() {
        let dir = TempDir::new("garbage");
        let path = dir.file("journal.db");
        std::fs::write(&path, b"this is definitely not a database\n".repeat(200)).unwrap();
        assert_corrupt_untouched(&path, "not a SQLite database");
        // SQLite never saw it: no journal or WAL files beside it.
        let names: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("journal.db")]);

        let short = dir.file("short.db");
        std::fs::write(&short, b"SQLite").unwrap();
        assert_corrupt_untouched(&short, "not a SQLite database");
    }

    #[test]
    fn sqlite_header_with_garbage_is_corrupt_and_untouched() {
        let dir = TempDir::new("header");
        let path = dir.file("journal.db");
        let mut bytes = SQLITE_HEADER.to_vec();
        bytes.extend(std::iter::repeat_n(0xAB_u8, 8192 - bytes.len()));
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt_untouched(&path, "");
    }

    #[test]
    fn another_database_is_corrupt_and_untouched() {
        let dir = TempDir::new("other");
        let path = dir.file("journal.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');",
            )
            .unwrap();
        }
        assert_corrupt_untouched(&path, "notes");

        // Another program's marked database, even with no tables.
        let marked = dir.file("marked.db");
        {
            let c = Connection::open(&marked).unwrap();
            c.pragma_update(None, "application_id", 0x1234_5678)
                .unwrap();
        }
        assert_corrupt_untouched(&marked, "another program");
    }

    #[test]
    fn damaged_journal_is_corrupt_and_untouched() {
        let dir = TempDir::new("damaged");
        let path = dir.file("journal.db");
        {
            let j = SqliteJournal::open(&path).unwrap();
            for i in 0..300 {
                j.insert(&record(&format!("{i:016x}"), 1, i)).unwrap();
            }
        }
        // Closing the last connection checkpointed the WAL into the file; wreck page 2 (the
        // jobs table's root).
        let mut bytes = std::fs::read(&path).unwrap();
        let page: usize = 4096;
        assert!(bytes.len() > 4 * page, "{}", bytes.len());
        bytes[page..2 * page].fill(0xFF);
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt_untouched(&path, "");
    }

    #[test]
    fn missing_columns_are_corrupt() {
        let dir = TempDir::new("columns");
        let path = dir.file("journal.db");
        drop(SqliteJournal::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("ALTER TABLE jobs DROP COLUMN state_json")
                .unwrap();
        }
        assert_corrupt_untouched(&path, "state_json");
    }

    #[test]
    fn a_version_1_journal_is_upgraded_and_keeps_its_jobs() {
        let dir = TempDir::new("v1");
        let path = dir.file("journal.db");
        {
            let c = Connection::open(&path).unwrap();
            let v1 = SCHEMA.replace("    private     INTEGER NOT NULL DEFAULT 0,\n", "");
            assert_ne!(v1, SCHEMA);
            c.execute_batch(&v1).unwrap();
            c.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO jobs (id, seq, owner, workflow, spec, state, state_json, created_ms) \
                 VALUES ('00000000000000ab', 1, 7, 'txt2img', \
                 '{\"workflow\":\"txt2img\",\"values\":{}}', 'waiting', \
                 '{\"state\":\"waiting\"}', 5)",
                [],
            )
            .unwrap();
        }
        let j = SqliteJournal::open(&path).unwrap();
        let old = j.get(&JobId("00000000000000ab".into())).unwrap().unwrap();
        assert!(!old.origin.private && old.spec.sources.is_empty());
        let mut r = record("00000000000000ac", 7, 6);
        r.origin.private = true;
        j.insert(&r).unwrap();
        drop(j);
        let j = SqliteJournal::open(&path).unwrap();
        let back = j.get(&r.id).unwrap().unwrap();
        assert!(back.origin.private);
        let c = Connection::open(&path).unwrap();
        let v: i32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("newer");
        let path = dir.file("journal.db");
        drop(SqliteJournal::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        match SqliteJournal::open(&path).unwrap_err() {
            JournalError::Open { reason, .. } => {
                assert!(reason.contains("newer comfycord"), "{reason}");
                assert!(
                    reason.contains(&format!("version {}", SCHEMA_VERSION + 1)),
                    "{reason}"
                );
            }
            other => panic!("expected Open, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_folder_cannot_be_opened() {
        let dir = TempDir::new("folder");
        match SqliteJournal::open(&dir.0).unwrap_err() {
            JournalError::Open { reason, .. } => assert!(reason.contains("folder"), "{reason}"),
            other => panic!("expected Open, got {other:?}"),
        }
    }

    #[test]
    fn undecodable_rows_name_the_job_and_the_text() {
        let j = SqliteJournal::open_in_memory().unwrap();
        j.insert(&record("0123456789abcdef", 1, 1)).unwrap();
        j.conn
            .lock()
            .unwrap()
            .execute("UPDATE jobs SET spec = '{not json'", [])
            .unwrap();
        for err in [
            j.get(&id("0123456789abcdef")).unwrap_err(),
            j.unfinished().unwrap_err(),
            j.recent_for_owner(1, 10, 0).unwrap_err(),
        ] {
            match err {
                JournalError::Storage(msg) => {
                    assert!(msg.contains("0123456789abcdef"), "{msg}");
                    assert!(msg.contains("{not json"), "{msg}");
                    assert!(msg.contains("spec"), "{msg}");
                }
                other => panic!("expected Storage, got {other:?}"),
            }
        }
    }

    fn finished_job(j: &dyn Journal, name: &str) -> JobId {
        j.insert(&record(name, 1, 1)).unwrap();
        j.finish(&id(name), &outputs(), 2).unwrap();
        id(name)
    }

    #[test]
    fn concurrent_mark_delivered_on_one_journal_succeeds_once() {
        let dir = TempDir::new("concurrent");
        let j = Arc::new(SqliteJournal::open(&dir.file("journal.db")).unwrap());
        let job = finished_job(j.as_ref(), "a");
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (j, job, barrier) = (Arc::clone(&j), job.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    j.mark_delivered(&job).unwrap()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(j.get(&job).unwrap().unwrap().state, JobState::Delivered);
    }

    #[test]
    fn concurrent_mark_delivered_across_connections_succeeds_once() {
        let dir = TempDir::new("connections");
        let path = dir.file("journal.db");
        let first = SqliteJournal::open(&path).unwrap();
        let job = finished_job(&first, "a");
        // Each thread its own connection, as separate processes would have.
        let journals: Vec<SqliteJournal> = (0..8)
            .map(|_| SqliteJournal::open(&path).unwrap())
            .collect();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = journals
            .into_iter()
            .map(|j| {
                let (job, barrier) = (job.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    j.mark_delivered(&job).unwrap()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(first.get(&job).unwrap().unwrap().state, JobState::Delivered);
    }
}
