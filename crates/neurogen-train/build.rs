//! Records the git commit neurogen is built from (run directories' provenance), when built from
//! a checkout with git on the PATH; a build from a source archive records none.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=NEUROGEN_GIT_COMMIT");
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=NEUROGEN_GIT_COMMIT={commit}");
    // Rebuilt when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit),
    // which a worktree keeps in the common directory. Only paths that exist: cargo takes a
    // missing one as always changed and would rebuild every time.
    let dir = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from);
    let common =
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]).map(PathBuf::from);
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let mut watch = Vec::new();
    if let Some(d) = &dir {
        watch.push(d.join("HEAD"));
    }
    if let Some(c) = common.as_ref().or(dir.as_ref()) {
        watch.push(c.join("packed-refs"));
        if let Some(b) = &branch {
            watch.push(c.join(b));
        }
    }
    for p in watch.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
