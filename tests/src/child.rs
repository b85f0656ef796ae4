//! Small helpers around `std::process::Child`: pipe collectors, bounded waits, signals.

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Poll interval for bounded waits.
const POLL: Duration = Duration::from_millis(20);

/// Collects everything a pipe yields, line by line, in a background thread.
pub struct Collector {
    text: Arc<Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Read `reader` to its end; `on_line` sees every line (without the newline) as it comes.
    pub fn spawn(
        reader: impl Read + Send + 'static,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        let thread = std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        lock(&sink).push_str(&text);
                        on_line(text.trim_end_matches(['\n', '\r']));
                    }
                }
            }
        });
        Self {
            text,
            thread: Some(thread),
        }
    }

    /// What has been read so far.
    pub fn text(&self) -> String {
        lock(&self.text).clone()
    }

    /// Wait for the pipe to close (the writer exited) and return everything it said.
    pub fn finish(mut self) -> String {
        if let Some(thread) = self.thread.take() {
            // A panicking `on_line` must not hide the text.
            let _ = thread.join();
        }
        self.text()
    }
}

/// Lock ignoring poison: a panicking test thread must not hide collected output.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wait at most `timeout` for `child` to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Send `signal` to `child` (ignoring "already gone").
pub fn signal(child: &Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// SIGTERM, then SIGKILL after `grace`; always reaps. Returns the exit status.
pub fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    signal(child, Signal::SIGTERM);
    if let Some(status) = wait_timeout(child, grace)? {
        return Ok(status);
    }
    let _ = child.kill();
    child.wait()
}
