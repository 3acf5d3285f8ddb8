//! Container logs in the CRI format the kubelet reads (kubelet: pkg/kubelet/kuberuntime/logs):
//! `2026-01-02T03:04:05.123456789Z stdout F text`, with `P` for the parts of a line longer
//! than [`MAX_LINE`], under the pod log directory (`/var/log/kubeboot/pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log`),
//! and their rotation by size and count (the kubelet's `containerLogMaxSize` and
//! `containerLogMaxFiles`), which the agent's own log gets too.
//!
//! A rotated log keeps its name for the newest lines; older ones move to `<log>.1`, `<log>.2`,
//! ... (the higher, the older), and files beyond the count are deleted, so one log never holds
//! more than `max_files × max_size` bytes (kubelet: pkg/kubelet/logs/container_log_manager.go
//! does the same with timestamped names, which sort less simply).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest line written as one log entry; longer lines are split into `P` entries.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The directory of one pod's logs: `<root>/<namespace>_<name>_<uid>` (kubelet:
/// BuildPodLogsDirectory).
pub fn pod_log_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{name}_{uid}"))
}

/// One container's log file for a given restart count (kubelet: BuildContainerLogsDirectory
/// + `<restartCount>.log`).
pub fn container_log_file(pod_dir: &Path, container: &str, restart_count: u32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart_count}.log"))
}

/// Formats a wall-clock time as RFC 3339 in UTC with nanoseconds:
/// `2026-01-02T03:04:05.123456789Z`.
pub fn rfc3339_nanos(t: SystemTime) -> String {
    format_rfc3339(t, true)
}

/// Formats a wall-clock time as RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    format_rfc3339(t, false)
}

/// Both formats, digit by digit: the agent stamps every probe result with one, and
/// `format!`'s machinery cost more than the rest of the status it goes into.
fn format_rfc3339(t: SystemTime, nanos: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(i64::try_from(days).unwrap_or(0));
    let mut out = String::with_capacity(32);
    push_digits(&mut out, y.unsigned_abs(), 4);
    out.push('-');
    push_digits(&mut out, u64::from(m), 2);
    out.push('-');
    push_digits(&mut out, u64::from(dd), 2);
    out.push('T');
    push_digits(&mut out, rem / 3600, 2);
    out.push(':');
    push_digits(&mut out, (rem % 3600) / 60, 2);
    out.push(':');
    push_digits(&mut out, rem % 60, 2);
    if nanos {
        out.push('.');
        push_digits(&mut out, u64::from(d.subsec_nanos()), 9);
    }
    out.push('Z');
    out
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    out.extend(buf[start..].iter().map(|&b| char::from(b)));
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats one CRI log entry; `text` excludes the newline.
pub fn format_line(t: SystemTime, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 48);
    out.extend_from_slice(rfc3339_nanos(t).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// Splits one stream's bytes into CRI entries as they arrive, keeping an unfinished line.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    max: usize,
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for `stream` with lines bounded by `max` bytes.
    pub fn new(stream: Stream, max: usize) -> Self {
        LineSplitter {
            stream,
            max: max.max(1),
            pending: Vec::new(),
        }
    }

    /// Feeds bytes read at time `t`; returns the complete entries they finish.
    pub fn feed(&mut self, t: SystemTime, mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let room = self.max - self.pending.len();
            // A newline right after `room` bytes still ends a line of exactly `max` bytes.
            match bytes.iter().take(room + 1).position(|b| *b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&bytes[..i]);
                    out.extend(format_line(t, self.stream, false, &self.pending));
                    self.pending.clear();
                    bytes = &bytes[i + 1..];
                }
                None if bytes.len() <= room => {
                    self.pending.extend_from_slice(bytes);
                    bytes = &[];
                }
                None => {
                    self.pending.extend_from_slice(&bytes[..room]);
                    out.extend(format_line(t, self.stream, true, &self.pending));
                    self.pending.clear();
                    bytes = &bytes[room..];
                }
            }
        }
        out
    }

    /// Ends the stream: an unfinished last line becomes a full entry.
    pub fn finish(&mut self, t: SystemTime) -> Vec<u8> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let out = format_line(t, self.stream, false, &self.pending);
        self.pending.clear();
        out
    }
}

/// The mode of log files: the owner writes, its group (adm on Debian) reads.
pub const LOG_MODE: u32 = 0o640;

/// How large one log file may grow and how many files of one log are kept, the current one
/// included (kubelet: containerLogMaxSize, containerLogMaxFiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Bytes per file before it is rotated.
    pub max_size: u64,
    /// Files per log, the current one included (at least 2).
    pub max_files: u32,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10Mi and 5 files.
    fn default() -> Self {
        LogRotation {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

impl LogRotation {
    /// Rotated files kept besides the current one (the kubelet requires at least one).
    fn kept(self) -> u32 {
        self.max_files.max(2) - 1
    }
}

/// `<log>.<n>`: the n-th newest rotated file of a log.
pub fn rotated_file(log: &Path, n: u32) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Moves `log` to `<log>.1`, each older file one up, and deletes what goes beyond
/// `rotation.max_files`. A missing file is no error.
pub fn rotate(log: &Path, rotation: LogRotation) -> io::Result<()> {
    let kept = rotation.kept();
    ignore_missing(fs::remove_file(rotated_file(log, kept)))?;
    for n in (1..kept).rev() {
        ignore_missing(fs::rename(rotated_file(log, n), rotated_file(log, n + 1)))?;
    }
    ignore_missing(fs::rename(log, rotated_file(log, 1)))
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Opens a log for appending; a new file gets [`LOG_MODE`] whatever the umask.
pub fn open_append(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(LOG_MODE)
        .open(path)
    {
        Ok(f) => {
            f.set_permissions(fs::Permissions::from_mode(LOG_MODE))?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// A log file with one writer (a shim) that rotates it before it would outgrow the limit.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: LogRotation,
}

impl RotatingLog {
    /// Opens (or creates) `path` for appending.
    ///
    /// # Errors
    /// When the file cannot be opened or created.
    pub fn open(path: &Path, rotation: LogRotation) -> io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Appends whole lines, rotating first whenever the next line would make the file
    /// larger than the limit (a single line longer than the limit gets a file of its own).
    ///
    /// # Errors
    /// When writing or rotating fails (a full disk); the caller drops the lines then rather
    /// than block the container, as the kubelet's runtimes do.
    pub fn append(&mut self, entries: &[u8]) -> io::Result<()> {
        for line in entries.split_inclusive(|b| *b == b'\n') {
            let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
            if self.size > 0 && self.size.saturating_add(len) > self.rotation.max_size {
                self.rotate()?;
            }
            self.file.write_all(line)?;
            self.size = self.size.saturating_add(len);
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        rotate(&self.path, self.rotation)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Removes the logs of a container's runs before the previous one, when run `restart_count`
/// starts: the kubelet keeps the current and the last dead container of each (what
/// `kubectl logs` and `kubectl logs --previous` show), so a crash loop cannot fill the disk
/// with one log per restart (kubelet: MaxPerPodContainer=1 in its container GC).
pub fn remove_old_runs(container_dir: &Path, restart_count: u32) {
    let Some(keep_from) = restart_count.checked_sub(1) else {
        return;
    };
    let Ok(entries) = fs::read_dir(container_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let run = name
            .to_str()
            .and_then(|n| n.split_once(".log"))
            .and_then(|(run, _)| run.parse::<u32>().ok());
        if run.is_some_and(|r| r < keep_from) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The last `n` lines of a log, from its rotated files too when the current one has fewer
/// (the current file may hold a single line right after a rotation).
pub fn tail_lines(log: &Path, n: usize) -> Vec<String> {
    /// Bounds the bytes read from each file.
    const MAX_READ: u64 = 4 * 1024 * 1024;
    let mut out: Vec<String> = Vec::new();
    for i in 0..=1000u32 {
        if out.len() >= n {
            break;
        }
        let path = if i == 0 {
            log.to_path_buf()
        } else {
            rotated_file(log, i)
        };
        let Ok(mut f) = File::open(&path) else {
            if i == 0 {
                continue;
            }
            break;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_READ && f.seek(SeekFrom::Start(len - MAX_READ)).is_err() {
            continue;
        }
        let mut bytes = Vec::new();
        if f.take(MAX_READ).read_to_end(&mut bytes).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.append(&mut out);
        out = lines;
    }
    out.split_off(out.len().saturating_sub(n))
}

/// Rotates the agent's own log when its stdout and stderr go to `log` (a detached agent,
/// see [`crate::daemon::start_detached`]) and it outgrew `rotation.max_size`: the files move
/// up and both descriptors are pointed at a new `log`. Anything else (a terminal, the
/// journal) is left alone. True when it rotated.
///
/// # Errors
/// When the log cannot be rotated or reopened.
pub fn rotate_own_output(log: &Path, rotation: LogRotation) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let Ok(on_disk) = fs::metadata(log) else {
        return Ok(false);
    };
    let same =
        |st: &nix::sys::stat::FileStat| st.st_ino == on_disk.ino() && st.st_dev == on_disk.dev();
    let err = nix::sys::stat::fstat(io::stderr()).map_err(io::Error::from)?;
    if !same(&err) || on_disk.len() <= rotation.max_size {
        return Ok(false);
    }
    let out_too = nix::sys::stat::fstat(io::stdout()).is_ok_and(|st| same(&st));
    rotate(log, rotation)?;
    let file = open_append(log)?;
    nix::unistd::dup2_stderr(&file).map_err(io::Error::from)?;
    if out_too {
        nix::unistd::dup2_stdout(&file).map_err(io::Error::from)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789)
    }

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(t()), "2026-01-02T03:04:05.123456789Z");
        assert_eq!(rfc3339(t()), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // A leap day.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    /// The digit-by-digit formats say what `format!` says, from 1970 to beyond
    /// year 9999 (five digits, unpadded).
    #[test]
    fn rfc3339_matches_format_over_many_times() {
        let reference = |t: SystemTime| {
            let d = t.duration_since(UNIX_EPOCH).unwrap();
            let secs = d.as_secs();
            let (y, m, dd) = civil_from_days(i64::try_from(secs / 86_400).unwrap());
            let rem = secs % 86_400;
            format!(
                "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                d.subsec_nanos()
            )
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t =
                UNIX_EPOCH + Duration::new(x % 400_000_000_000, (x >> 33) as u32 % 1_000_000_000);
            let want = reference(t);
            assert_eq!(rfc3339_nanos(t), want);
            assert_eq!(rfc3339(t), format!("{}Z", &want[..want.len() - 11]));
        }
    }

    #[test]
    fn full_lines_are_f_entries() {
        let mut s = LineSplitter::new(Stream::Stdout, MAX_LINE);
        let out = s.feed(t(), b"hello\nwor");
        assert_eq!(out, b"2026-01-02T03:04:05.123456789Z stdout F hello\n");
        let out = s.feed(t(), b"ld\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T03:04:05.123456789Z stdout F world\n"
        );
        assert!(s.finish(t()).is_empty());
    }

    #[test]
    fn long_lines_are_split_into_p_entries() {
        let mut s = LineSplitter::new(Stream::Stderr, 4);
        let out = String::from_utf8(s.feed(t(), b"abcdefghij\nxy")).unwrap();
        let lines: Vec<&str> = out.lines().map(|l| &l[31..]).collect();
        assert_eq!(lines, ["stderr P abcd", "stderr P efgh", "stderr F ij"]);
        let end = String::from_utf8(s.finish(t())).unwrap();
        assert!(end.ends_with(" stderr F xy\n"), "{end}");
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_one_entry() {
        let mut s = LineSplitter::new(Stream::Stdout, 4);
        let out = String::from_utf8(s.feed(t(), b"abcd")).unwrap();
        assert!(out.is_empty());
        let out = String::from_utf8(s.feed(t(), b"\nabcde")).unwrap();
        let lines: Vec<&str> = out.lines().map(|l| &l[31..]).collect();
        assert_eq!(lines, ["stdout F abcd", "stdout P abcd"]);
    }

    /// The sorted names in a directory.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotation_bounds_size_and_count_and_tail_reads_across_files() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        let rotation = LogRotation {
            max_size: 100,
            max_files: 3,
        };
        let mut w = RotatingLog::open(&log, rotation).unwrap();
        for i in 0..100 {
            w.append(format!("line {i:03} .........\n").as_bytes())
                .unwrap();
        }
        let files = names(d.path());
        assert_eq!(files, ["0.log", "0.log.1", "0.log.2"]);
        for f in &files {
            let len = fs::metadata(d.path().join(f)).unwrap().len();
            assert!(len <= 100, "{f} has {len} bytes");
        }
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, LOG_MODE);
        // The newest lines, in order, across the current and rotated files.
        let tail = tail_lines(&log, 7);
        let want: Vec<String> = (93..100)
            .map(|i| format!("line {i:03} ........."))
            .collect();
        assert_eq!(tail, want);
        assert_eq!(
            tail_lines(&d.path().join("none.log"), 3),
            Vec::<String>::new()
        );
    }

    #[test]
    fn only_the_current_and_previous_runs_keep_logs() {
        let d = tempfile::tempdir().unwrap();
        for f in ["0.log", "1.log", "1.log.1", "2.log", "3.log", "notes.txt"] {
            fs::write(d.path().join(f), "x").unwrap();
        }
        remove_old_runs(d.path(), 0);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 6);
        remove_old_runs(d.path(), 3);
        assert_eq!(names(d.path()), ["2.log", "3.log", "notes.txt"]);
    }

    #[test]
    fn paths_follow_the_kubelet() {
        let d = pod_log_dir(Path::new("/var/log/pods"), "kube-system", "etcd-n1", "abc");
        assert_eq!(d, Path::new("/var/log/pods/kube-system_etcd-n1_abc"));
        assert_eq!(
            container_log_file(&d, "etcd", 2),
            Path::new("/var/log/pods/kube-system_etcd-n1_abc/etcd/2.log")
        );
    }
}
