//! `--generate`: the man pages render with `man -l -` and the bash completions load, for both
//! tools (the pages and completions are made from the same clap definitions as `--help`).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn generated(tool: &str, kind: &str) -> Vec<u8> {
    let out = Command::new(support::bin(tool)).args(["--generate", kind]).output().unwrap();
    assert!(out.status.success(), "{tool} --generate {kind}: {out:?}");
    out.stdout
}

#[test]
fn man_pages_render() {
    for tool in ["anysend", "anyrecv"] {
        let page = generated(tool, "man");
        let mut man = Command::new("man")
            .args(["-l", "-"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("man (man-db) is installed by .ci/run");
        man.stdin.take().unwrap().write_all(&page).unwrap();
        let out = man.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{tool}: man -l -: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{tool}: {text}");
        // A flag and its help, as --help has them.
        assert!(text.contains("--generate"), "{tool}: {text}");
        assert!(text.contains("--quiet"), "{tool}: {text}");
    }
}

#[test]
fn bash_completions_load_and_complete_flags() {
    for tool in ["anysend", "anyrecv"] {
        let script = generated(tool, "complete-bash");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(tool);
        std::fs::write(&file, script).unwrap();
        // Load it and ask the completion function for "--gen<TAB>".
        let probe = format!(
            "source {f} && complete -p {tool} && COMP_WORDS=({tool} --gen) COMP_CWORD=1 \
             COMP_LINE='{tool} --gen' COMP_POINT=${{#COMP_LINE}} && _{tool} {tool} --gen {tool} \
             && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            f = file.display()
        );
        let out = Command::new("bash").args(["--norc", "-c", &probe]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("-F _{tool} {tool}")), "{tool}: {text}");
        assert!(text.lines().any(|l| l == "--generate"), "{tool}: {text}");
    }
}

#[test]
fn zsh_and_fish_completions_name_the_flags() {
    for tool in ["anysend", "anyrecv"] {
        for kind in ["complete-zsh", "complete-fish"] {
            let text = String::from_utf8(generated(tool, kind)).unwrap();
            assert!(text.contains(tool) && text.contains("generate"), "{tool} {kind}: {text}");
        }
    }
}
