//! Zero-downtime upgrade: a new process takes over every listening socket of the running one
//! (each entrypoint's and the admin API's) through the running process's control socket, a Unix
//! socket (`<state-dir>/tether.sock` by default, mode 0600), with file-descriptor passing
//! (`SCM_RIGHTS`). The sockets are never closed, so no connection is refused: until the old
//! process stops accepting, both accept from the same queues.
//!
//! The exchange, one line each way (the new process is the client):
//!
//! 1. new: `TAKEOVER <pid>`; old: `SOCKETS <json names>` with the descriptors attached;
//! 2. the new process starts serving on them; new: `SERVING`;
//! 3. old: stops accepting, removes its control socket, `RELEASED`; the new process binds the
//!    control socket, and the old one drains (each kept-alive HTTP/1.1 connection's next
//!    response says `Connection: close`, h2 clients get GOAWAY) and exits.
//!
//! `tether upgrade` asks the running process to start its successor (the same executable or
//! `--binary`, with the same arguments and `--takeover`, its output going where the old one's
//! goes): `UPGRADE [binary]`; the old answers `STARTED <pid>`, then `DONE` once the successor
//! serves, or `FAILED <why>` (and keeps serving). SIGUSR2 does the same without a client.
//!
//! Hand-written over `rustix`'s `sendmsg`/`recvmsg`: no crate does descriptor passing with less.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The control socket's file name under the state directory.
pub const SOCKET_NAME: &str = "tether.sock";
/// At most this many sockets are handed over.
const MAX_SOCKETS: usize = 64;
/// How long the new process may take to start serving once it has the sockets.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// Listening sockets by name: `entrypoint:<name>` and `admin`.
#[derive(Debug, Default)]
pub struct Sockets(pub Vec<(String, OwnedFd)>);

impl Sockets {
    /// Take the socket named `name`, if it was handed over.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.swap_remove(i).1)
    }

    /// Take every socket of `base`: `base` itself, then `base#1`, `base#2`, ... in that order
    /// (one per worker of the process that handed them over).
    pub fn take_all(&mut self, base: &str) -> Vec<OwnedFd> {
        let index = |n: &str| -> Option<usize> {
            if n == base {
                return Some(0);
            }
            n.strip_prefix(base)?.strip_prefix('#')?.parse().ok()
        };
        let mut found: Vec<(usize, OwnedFd)> = Vec::new();
        let mut rest = Vec::new();
        for (n, fd) in std::mem::take(&mut self.0) {
            match index(&n) {
                Some(i) => found.push((i, fd)),
                None => rest.push((n, fd)),
            }
        }
        self.0 = rest;
        found.sort_by_key(|(i, _)| *i);
        found.into_iter().map(|(_, fd)| fd).collect()
    }

    /// Copies of the sockets (the same open sockets, new descriptors), to hand over.
    pub fn try_clone(&self) -> std::io::Result<Sockets> {
        self.0
            .iter()
            .map(|(n, fd)| Ok((n.clone(), fd.try_clone()?)))
            .collect::<std::io::Result<_>>()
            .map(Sockets)
    }
}

/// The name of entrypoint `name`'s socket.
pub fn entrypoint(name: &str) -> String {
    format!("entrypoint:{name}")
}

/// The name of the admin API's socket.
pub const ADMIN: &str = "admin";

fn line(stream: &mut BufReader<UnixStream>) -> anyhow::Result<String> {
    let mut l = String::new();
    if stream.read_line(&mut l)? == 0 {
        bail!("the other process closed the control socket");
    }
    Ok(l.trim_end().to_string())
}

/// Send `text` (one line) with `fds` attached.
fn send_with_fds(stream: &UnixStream, text: &str, fds: &[OwnedFd]) -> std::io::Result<()> {
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(std::io::Error::other("too many sockets to hand over"));
    }
    let payload = format!("{text}\n");
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(payload.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent < payload.len() {
        // The descriptors went with the first byte; the rest of the line follows plainly.
        (&*stream).write_all(&payload.as_bytes()[sent..])?;
    }
    Ok(())
}

/// Receive a line with descriptors attached (they come with its first bytes).
fn recv_with_fds(stream: &UnixStream) -> anyhow::Result<(String, Vec<OwnedFd>)> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = vec![0u8; 64 * 1024];
    let got = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    let mut text = buf[..got.bytes].to_vec();
    let mut rest = BufReader::new(stream);
    while !text.ends_with(b"\n") {
        let mut more = Vec::new();
        if rest.read_until(b'\n', &mut more)? == 0 {
            bail!("the running process closed the control socket mid-message");
        }
        text.extend(more);
    }
    Ok((String::from_utf8_lossy(&text).trim_end().to_string(), fds))
}

/// The new process's side, before it serves: the running process's sockets, or `None` when no
/// process listens on `path` (then the new one binds its own).
pub fn take_over(path: &Path) -> anyhow::Result<Option<Handover>> {
    let stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("--takeover: connecting to {}", path.display()))
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&stream).write_all(format!("TAKEOVER {}\n", std::process::id()).as_bytes())?;
    let (reply, fds) = recv_with_fds(&stream).context("--takeover: receiving the sockets")?;
    let Some(json) = reply.strip_prefix("SOCKETS ") else {
        bail!("--takeover: the running process answered {reply:?}");
    };
    let (old_pid, names): (u32, Vec<String>) =
        serde_json::from_str(json).context("--takeover: the socket list")?;
    if names.len() != fds.len() {
        bail!(
            "--takeover: {} socket names but {} descriptors",
            names.len(),
            fds.len()
        );
    }
    Ok(Some(Handover {
        sockets: Sockets(names.into_iter().zip(fds).collect()),
        stream: BufReader::new(stream),
        old_pid,
    }))
}

/// Sockets received from the running process, and the line back to it.
#[derive(Debug)]
pub struct Handover {
    pub sockets: Sockets,
    stream: BufReader<UnixStream>,
    pub old_pid: u32,
}

impl Handover {
    /// Tell the old process this one serves; returns once it stopped accepting and released
    /// the control socket.
    pub fn serving(mut self) -> anyhow::Result<()> {
        self.stream
            .get_mut()
            .set_read_timeout(Some(START_DEADLINE))?;
        self.stream.get_mut().write_all(b"SERVING\n")?;
        match line(&mut self.stream)?.as_str() {
            "RELEASED" => Ok(()),
            other => bail!("the old process answered {other:?}"),
        }
    }
}

/// The control socket of a running process.
pub struct ControlSocket {
    path: PathBuf,
    /// The socket file's inode, to remove it only while it is this one.
    ino: u64,
    listener: tokio::net::UnixListener,
}

/// What a client of the control socket asks.
pub enum Asked {
    /// A new process wants the sockets.
    Takeover {
        stream: BufReader<UnixStream>,
        pid: u32,
    },
    /// `tether upgrade`: start a successor.
    Upgrade {
        stream: BufReader<UnixStream>,
        binary: Option<PathBuf>,
    },
}

impl ControlSocket {
    /// Listen on `path` (mode 0600). A stale file (no process behind it) is replaced; a live
    /// process there is an error.
    pub fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "{}: another Tether is running on this control socket: give this one its own --state-dir (or --control-socket), or start it with --takeover to replace the running one",
                path.display()
            );
        }
        let _ = std::fs::remove_file(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("control socket: creating {}", dir.display()))?;
        }
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("control socket: cannot listen on {}", path.display()))?;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("control socket: {}", path.display()))?;
        let ino = std::fs::metadata(path)?.ino();
        Ok(ControlSocket {
            path: path.to_path_buf(),
            ino,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next request (bad ones are answered and skipped).
    pub async fn next(&self) -> Asked {
        loop {
            let s = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let asked = tokio::task::spawn_blocking(move || -> anyhow::Result<Asked> {
                let s = s.into_std()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut stream = BufReader::new(s);
                let l = line(&mut stream)?;
                let (verb, arg) = l.split_once(' ').unwrap_or((l.as_str(), ""));
                match verb {
                    "TAKEOVER" => Ok(Asked::Takeover {
                        pid: arg.parse().unwrap_or(0),
                        stream,
                    }),
                    "UPGRADE" => Ok(Asked::Upgrade {
                        binary: (!arg.is_empty()).then(|| PathBuf::from(arg)),
                        stream,
                    }),
                    _ => {
                        let _ = stream
                            .get_mut()
                            .write_all(b"FAILED expected TAKEOVER or UPGRADE\n");
                        bail!("control socket: {l:?}")
                    }
                }
            })
            .await;
            match asked {
                Ok(Ok(a)) => return a,
                Ok(Err(e)) => tracing::warn!("control socket: {e:#}"),
                Err(e) => tracing::warn!("control socket: {e}"),
            }
        }
    }

    /// Hand `sockets` to the process on `stream` and wait until it serves; then stop listening
    /// here (the file is removed) and tell it so. `Err`: it did not take over (this process
    /// keeps serving).
    pub async fn hand_over(
        self,
        mut stream: BufReader<UnixStream>,
        sockets: Sockets,
    ) -> Result<(), (ControlSocket, anyhow::Error)> {
        let exchange = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (names, fds): (Vec<String>, Vec<OwnedFd>) = sockets.0.into_iter().unzip();
            let text = serde_json::to_string(&(std::process::id(), names))?;
            send_with_fds(stream.get_ref(), &format!("SOCKETS {text}"), &fds)?;
            stream.get_mut().set_read_timeout(Some(START_DEADLINE))?;
            match line(&mut stream)?.as_str() {
                "SERVING" => Ok(stream),
                other => bail!("the new process answered {other:?}"),
            }
        })
        .await;
        let mut stream = match exchange {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((self, e)),
            Err(e) => return Err((self, e.into())),
        };
        // `self` goes with this function: its file is removed then, before the successor binds.
        drop(self);
        let _ =
            tokio::task::spawn_blocking(move || stream.get_mut().write_all(b"RELEASED\n")).await;
        Ok(())
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Only while the file is still the one bound here: a successor binds the same path.
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Tell `stream` (a `tether upgrade` client) one line; it may have gone.
pub fn tell(stream: &mut BufReader<UnixStream>, text: &str) {
    let _ = stream.get_mut().write_all(format!("{text}\n").as_bytes());
}

/// `tether upgrade`: ask the process on `path` to start its successor and wait for the outcome;
/// each line the old process says is printed.
pub fn ask_upgrade(path: &Path, binary: Option<&Path>, deadline: Duration) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "{}: no Tether listening (is it running, with this --state-dir or --control-socket?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(deadline))?;
    let ask = match binary {
        Some(b) => format!("UPGRADE {}\n", b.display()),
        None => "UPGRADE\n".to_string(),
    };
    stream.write_all(ask.as_bytes())?;
    let mut reader = BufReader::new(stream);
    loop {
        let l = line(&mut reader).context("waiting for the upgrade")?;
        println!("{l}");
        if l == "DONE" {
            return Ok(());
        }
        if let Some(why) = l.strip_prefix("FAILED") {
            bail!("upgrade failed:{why}; the running process keeps serving");
        }
    }
}

/// Tell systemd (`Type=notify`), when it started this process, that it is ready, and after a
/// takeover that it is now the service's main process (`NotifyAccess=all`).
pub fn notify_ready(took_over: bool) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = if took_over {
        format!("MAINPID={}\nREADY=1\n", std::process::id())
    } else {
        "READY=1\n".to_string()
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let target = target.to_string_lossy();
        if let Some(abstract_name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            sock.send_to_addr(message.as_bytes(), &addr)?;
        } else {
            sock.send_to(message.as_bytes(), &*target)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "NOTIFY_SOCKET: cannot notify the service manager");
    }
}
