//! Replication over ssh, as users run it: `anysend --from A B | ssh host anyrecv DEST`, with a
//! real sshd started on 127.0.0.1 by the test (keys generated in a temporary directory) and
//! stopped when the test ends, whatever happens.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anysend_testbed::cmd::capture;
use anysend_testbed::compare::{compare, CompareOptions};
use anysend_testbed::corpus;
use anysend_testbed::loopfs::{BtrfsFs, DestFs, DestKind};
use anysend_testbed::privilege::require_privileged_with;
use anysend_testbed::scenario::run_scenario_on_btrfs;

/// An sshd on loopback; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out =
        capture(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path));
    support::ok("ssh-keygen", out).expect("ssh-keygen");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        std::fs::create_dir_all("/run/sshd").expect("privilege separation dir");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPidFile {d}/sshd.pid\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start sshd");
        let sshd = Sshd { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start listening on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// `ssh ... root@127.0.0.1 COMMAND`, with host-key checking pinned to this test's files.
    fn ssh_command(&self, remote: &str) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(d.join("client_key"))
            .args(["-p", &self.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", d.join("known_hosts").display()))
            .args(["-o", "LogLevel=ERROR", "root@127.0.0.1", remote]);
        c
    }
}

/// Quotes a path for the remote shell.
fn sq(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// `anysend [--from origin] target | ssh root@127.0.0.1 anyrecv --state-dir S dest`.
fn replicate(sshd: &Sshd, origin: Option<&Path>, target: &Path, dest: &Path, state: &Path) {
    let mut send = Command::new(support::bin("anysend"));
    if let Some(o) = origin {
        send.arg("--from").arg(o);
    }
    let mut sender = send.arg("-q").arg(target).stdout(Stdio::piped()).spawn().expect("anysend");
    let pipe = sender.stdout.take().expect("anysend stdout");
    let remote = format!("{} --state-dir {} {}", sq(&support::bin("anyrecv")), sq(state), sq(dest));
    let recv = sshd.ssh_command(&remote).stdin(pipe).output().expect("ssh");
    let sent = sender.wait().expect("anysend exit");
    assert!(sent.success(), "anysend failed: {sent}");
    assert!(recv.status.success(), "ssh anyrecv failed: {}", String::from_utf8_lossy(&recv.stderr));
}

#[test]
fn replication_over_ssh() {
    let tools = ["sshd", "ssh", "ssh-keygen", "mkfs.btrfs", "mkfs.ext4", "losetup"];
    let Some(_p) = require_privileged_with("e2e_ssh", &tools) else { return };
    let scenario = corpus::scenario("renames_across_dirs").expect("scenario");
    let src = BtrfsFs::new(256 << 20);
    let snaps: Vec<PathBuf> = run_scenario_on_btrfs(&scenario, &src);
    let dest = DestFs::new(DestKind::Ext4);
    let replica = dest.path().join("replica");
    let state = support::state_dir_for(dest.path());
    let sshd = Sshd::start();
    for (i, snap) in snaps.iter().enumerate() {
        let origin = i.checked_sub(1).map(|p| snaps[p].as_path());
        replicate(&sshd, origin, snap, &replica, &state);
        compare(snap, &replica, &CompareOptions::new())
            .expect("compare")
            .assert_equal(&format!("over ssh, step {}", i + 1));
    }
    let _ = std::fs::remove_dir_all(&state);
}
