//! `admin backup FILE`: the daemon's backup received over the socket and written to FILE by
//! this process (the daemon's sandbox cannot write the operator's path), atomically: into
//! a temporary file beside FILE, mode 0600, synced, then renamed over FILE and the
//! directory synced. On any failure, or when interrupted (SIGINT, SIGTERM, SIGHUP), FILE is
//! left as it was and the temporary file removed.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use compartmentctl::args::OutputFormat;
use compartmentctl::wire::{BackupCounts, BackupEnd};
use compartmentctl::{BackupItem, Client, ClientError};
use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{SigSet, Signal};
use serde::Serialize;

use super::escape::escaped;
use super::exit::Failure;
use super::output;

/// What a finished backup prints with `--output json`.
#[derive(Serialize)]
struct Written<'a> {
    file: &'a Path,
    taken_at: &'a str,
    store: &'a str,
    counts: BackupCounts,
}

/// Receives the backup and writes it to `file`; prints what was written. `prog` names the
/// command in what an interruption prints.
pub fn backup(
    client: Client,
    file: &Path,
    format: OutputFormat,
    prog: &str,
) -> Result<(), Failure> {
    let mut stream = client.backup()?;
    let header = stream.header.clone();
    let not_written = |why: String| {
        Failure::Backup(format!(
            "{} was not written: {why}",
            escaped(&file.display().to_string())
        ))
    };
    let (dir, name) = place_of(file).map_err(not_written)?;
    // Created 0600 by tempfile, with a name nothing else uses; removed when dropped unless
    // renamed into place.
    let temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(|err| not_written(format!("cannot create a file in {}: {err}", dir.display())))?;
    let placed = Arc::new(AtomicBool::new(false));
    remove_on_signal(
        temporary.path().to_owned(),
        format!(
            "{prog}: {} was not written: interrupted",
            escaped(&file.display().to_string())
        ),
        placed.clone(),
    )
    .map_err(|err| not_written(format!("cannot watch for interruptions: {err}")))?;
    let io = |err: std::io::Error| not_written(err.to_string());
    let mut out = BufWriter::with_capacity(1 << 20, temporary.as_file());
    serde_json::to_writer(&mut out, &header).map_err(|err| io(err.into()))?;
    out.write_all(b"\n").map_err(io)?;
    let progress = progress(header.counts.total());
    let mut received = 0u64;
    let end = loop {
        match stream.next_item() {
            Ok(BackupItem::Records(records)) => {
                for record in &records {
                    out.write_all(record.get().as_bytes()).map_err(io)?;
                    out.write_all(b"\n").map_err(io)?;
                }
                received += records.len() as u64;
                progress.inc(records.len() as u64);
            }
            Ok(BackupItem::End(end)) => break end,
            Ok(BackupItem::Failed(failed)) => {
                progress.abandon();
                return Err(not_written(format!(
                    "the daemon stopped the backup: {}",
                    failed.reason
                )));
            }
            Err(err) => {
                progress.abandon();
                return Err(not_written(ClientError::to_string(&err)));
            }
        }
    };
    progress.finish_and_clear();
    if end.counts != header.counts || received != header.counts.total() {
        return Err(not_written(format!(
            "the daemon announced {} records and sent {received}",
            header.counts.total()
        )));
    }
    serde_json::to_writer(&mut out, &BackupEnd::of(end.counts)).map_err(|err| io(err.into()))?;
    out.write_all(b"\n").map_err(io)?;
    out.flush().map_err(io)?;
    drop(out);
    temporary.as_file().sync_all().map_err(io)?;
    temporary
        .persist(file)
        .map_err(|err| not_written(err.error.to_string()))?;
    placed.store(true, Ordering::SeqCst);
    // The rename is durable once the directory is.
    File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| {
            Failure::Backup(format!(
                "{} was written, but syncing its directory failed: {err}",
                escaped(&file.display().to_string())
            ))
        })?;
    let text = match format {
        OutputFormat::Text => format!(
            "Backed up {} records ({}) taken at {} from {} to {}.\n",
            header.counts.total(),
            header.counts,
            escaped(&header.taken_at),
            escaped(&header.store),
            escaped(&file.display().to_string())
        ),
        OutputFormat::Json | OutputFormat::Jsonl => output::json(&Written {
            file,
            taken_at: &header.taken_at,
            store: &header.store,
            counts: header.counts,
        })?,
    };
    output::write_stdout(text.as_bytes()).map_err(Failure::Output)
}

/// Until the backup is in place (`placed`), SIGINT, SIGTERM and SIGHUP remove `temporary`,
/// say `interrupted` on stderr and end the command with 128 plus the signal's number. The
/// signals are blocked in this thread (and so in the threads it starts from now on) and
/// waited for by one of their own, which then does it outside any signal handler.
fn remove_on_signal(
    temporary: PathBuf,
    interrupted: String,
    placed: Arc<AtomicBool>,
) -> nix::Result<()> {
    let signals: SigSet = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        .into_iter()
        .collect();
    signals.thread_block()?;
    std::thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            if !placed.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(&temporary);
                eprintln!("\n{interrupted}");
            }
            std::process::exit(128 + signal as i32);
        }
    });
    Ok(())
}

/// The directory `file` is in and its name.
fn place_of(file: &Path) -> Result<(PathBuf, String), String> {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| "it names no file".to_owned())?;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// A bar on stderr when it is a terminal, of `total` records: done, rate, time left.
fn progress(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "backing up [{bar:30}] {human_pos}/{human_len} records, {per_sec}, {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
