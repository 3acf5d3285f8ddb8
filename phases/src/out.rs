//! User output: kubeadm's `[phase] message` lines on stdout, or captured for tests.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where user output goes. Cloning shares the destination.
#[derive(Clone, Default)]
pub struct Out {
    captured: Option<Arc<Mutex<String>>>,
}

impl Out {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        Self { captured: None }
    }

    /// Captures into a buffer (tests).
    pub fn capture() -> Self {
        Self {
            captured: Some(Arc::new(Mutex::new(String::new()))),
        }
    }

    /// What was captured so far.
    pub fn captured(&self) -> String {
        self.captured
            .as_ref()
            .and_then(|c| c.lock().ok().map(|s| s.clone()))
            .unwrap_or_default()
    }

    /// Writes one line as is.
    pub fn line(&self, text: &str) {
        match &self.captured {
            Some(buf) => {
                if let Ok(mut b) = buf.lock() {
                    b.push_str(text);
                    b.push('\n');
                }
            }
            None => {
                let mut so = std::io::stdout().lock();
                let _ = writeln!(so, "{text}");
                let _ = so.flush();
            }
        }
    }

    /// Writes `[phase] message`.
    pub fn say(&self, phase: &str, message: &str) {
        self.line(&format!("[{phase}] {message}"));
    }
}

/// `say!(out, "certs", "Generating {:?} certificate and key", name)`.
#[macro_export]
macro_rules! say {
    ($out:expr, $phase:expr, $($arg:tt)*) => {
        $out.say($phase, &format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn say_formats_kubeadm_style() {
        let out = Out::capture();
        say!(out, "certs", "Generating {:?} certificate and key", "ca");
        assert_eq!(
            out.captured(),
            "[certs] Generating \"ca\" certificate and key\n"
        );
    }
}
