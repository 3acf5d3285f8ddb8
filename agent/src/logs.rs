//! Container logs in the CRI format the kubelet reads (kubelet: pkg/kubelet/kuberuntime/logs):
//! `2026-01-02T03:04:05.123456789Z stdout F text`, with `P` for the parts of a line longer
//! than [`MAX_LINE`], under the pod log directory (`/var/log/kubeboot/pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log`)

use std::io::{self, Write};
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
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Formats a wall-clock time as RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let s = rfc3339_nanos(t);
    format!("{}Z", &s[..19])
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

/// Appends already-formatted entries to a log file, ignoring a full disk rather than
/// blocking the container (the kubelet's runtimes drop lines likewise).
pub fn append(file: &mut std::fs::File, entries: &[u8]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    file.write_all(entries)
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
