//! Private daemons of a test process (a PostgreSQL server, an S3 server): each is the
//! direct child of a thread that lives as long as it runs, the kernel signals it when
//! the test process dies however that ends (`PR_SET_PDEATHSIG`), and at normal exit it
//! is stopped and its directory removed.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How long a daemon may take to exit at the end of the test process.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running daemon.
pub(crate) struct Daemon {
    pid: libc::pid_t,
    signal: libc::c_int,
    exited: Arc<AtomicBool>,
}

/// A daemon to stop at exit: its pid, stop signal, exit flag and directory.
type Registered = (libc::pid_t, libc::c_int, Arc<AtomicBool>, PathBuf);

/// Daemons to stop at exit, with the directories to remove after them.
static AT_EXIT: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

impl Daemon {
    /// Starts `cmd` as `name`, switched to the OS user `user` (uid, gid) first if
    /// given. `signal` is what stops it: sent by the kernel if this process dies, and
    /// by [`Daemon::kill`] and at exit, after which `dir` is removed.
    pub(crate) fn spawn(
        name: &str,
        mut cmd: Command,
        user: Option<(libc::uid_t, libc::gid_t)>,
        signal: libc::c_int,
        dir: PathBuf,
    ) -> Result<Daemon, String> {
        let parent = libc::pid_t::try_from(std::process::id())
            .map_err(|e| format!("this process's id does not fit a pid_t: {e}"))?;
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe work is allowed. It makes plain system calls (setgroups,
        // setgid, setuid, prctl, getppid) on values copied into it, allocates nothing
        // (errors are built from raw OS error numbers) and touches no lock or shared
        // state. The user switch comes first because the kernel clears the parent-death
        // signal on a change of credentials; the getppid check closes the race of a
        // parent that died before the prctl call.
        unsafe {
            cmd.pre_exec(move || {
                if let Some((uid, gid)) = user {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }

        // The parent-death signal follows the thread that forked the child, so the fork
        // happens on a thread that stays for as long as the daemon runs: it waits for it.
        let exited = Arc::new(AtomicBool::new(false));
        let done = exited.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        let what = name.to_string();
        std::thread::Builder::new()
            .name(format!("test-{name}"))
            .spawn(move || match cmd.spawn() {
                Err(e) => {
                    let _ = sender.send(Err(format!("starting {what}: {e}")));
                }
                Ok(mut child) => {
                    let _ = sender.send(Ok(child.id()));
                    let _ = child.wait();
                    done.store(true, Ordering::SeqCst);
                }
            })
            .map_err(|e| format!("starting the thread that runs {name}: {e}"))?;
        let pid = receiver
            .recv()
            .map_err(|e| format!("starting {name}: {e}"))??;
        let pid = libc::pid_t::try_from(pid).map_err(|e| format!("{name} pid {pid}: {e}"))?;

        static REGISTERED: Once = Once::new();
        REGISTERED.call_once(|| {
            // SAFETY: `stop_all` is an `extern "C" fn()` that never unwinds (it only
            // makes calls that report failure through return values).
            unsafe {
                libc::atexit(stop_all);
            }
        });
        AT_EXIT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((pid, signal, exited.clone(), dir));
        Ok(Daemon {
            pid,
            signal,
            exited,
        })
    }

    /// Whether the daemon has exited.
    pub(crate) fn exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    /// Sends the daemon its stop signal.
    pub(crate) fn kill(&self) {
        // SAFETY: kill with a pid of our own child has no memory-safety concerns.
        unsafe {
            libc::kill(self.pid, self.signal);
        }
    }
}

/// At exit: stops every daemon still running, then removes its directory.
extern "C" fn stop_all() {
    let daemons = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()));
    for (pid, signal, exited, _) in &daemons {
        if !exited.load(Ordering::SeqCst) {
            // SAFETY: kill with a pid of our own child has no memory-safety concerns.
            unsafe {
                libc::kill(*pid, *signal);
            }
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for (_, _, exited, dir) in daemons {
        while !exited.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
