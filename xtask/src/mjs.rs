//! mongo-java-server for the change-stream tests: Maven fetches the pinned artifact and its
//! dependencies into `.tools/mjs/lib` (with a project-local repository, `.tools/m2`), and
//! `javac` compiles the small launcher `tests/mjs/PolymongoMjs.java` into `.tools/mjs/classes`.
//! The test harness (`polymongo_tests::mjs`) starts it from there.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use polymongo_tests::mjs::{MJS_DIR, MJS_VERSION};

/// Installs mongo-java-server and compiles the launcher, unless the stamp says the same
/// version and launcher source are already there. Installs Java 17 and Maven with apt-get
/// when they are missing and this runs as root (as on a fresh CI machine).
pub fn install_mjs(root: &Path) -> Result<()> {
    let dir = root.join(MJS_DIR);
    let source_dir = root.join("tests/mjs");
    let launcher = source_dir.join("PolymongoMjs.java");
    let pom = source_dir.join("pom.xml");
    let stamp_text = format!(
        "{MJS_VERSION}\n{}\n{}\n",
        std::fs::read_to_string(&pom).context("reading tests/mjs/pom.xml")?,
        std::fs::read_to_string(&launcher).context("reading tests/mjs/PolymongoMjs.java")?
    );
    let stamp = dir.join("stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text)
        && dir.join("classes/PolymongoMjs.class").exists()
    {
        return Ok(());
    }
    ensure_java_and_maven()?;
    eprintln!(
        "installing mongo-java-server {MJS_VERSION} into {} ...",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("classes"))?;
    let status = Command::new("mvn")
        .args(["-q", "-B", "-Dstyle.color=never", "-f"])
        .arg(&pom)
        .arg(format!(
            "-Dmaven.repo.local={}",
            root.join(".tools/m2").display()
        ))
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", dir.join("lib").display()))
        .status()
        .context("running mvn")?;
    if !status.success() {
        bail!("`mvn dependency:copy-dependencies` for mongo-java-server {MJS_VERSION} failed");
    }
    let status = Command::new("javac")
        .arg("-cp")
        .arg(format!("{}/*", dir.join("lib").display()))
        .arg("-d")
        .arg(dir.join("classes"))
        .arg(&launcher)
        .status()
        .context("running javac")?;
    if !status.success() {
        bail!("compiling tests/mjs/PolymongoMjs.java failed");
    }
    std::fs::write(&stamp, stamp_text)?;
    eprintln!("mongo-java-server {MJS_VERSION} installed");
    Ok(())
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok()
}

fn ensure_java_and_maven() -> Result<()> {
    if have("java", "-version") && have("javac", "-version") && have("mvn", "-v") {
        return Ok(());
    }
    if crate::can_apt_install() {
        eprintln!("installing Java 17 and Maven for mongo-java-server (apt-get) ...");
        if crate::apt_install(&["openjdk-17-jdk-headless", "maven"]) {
            return Ok(());
        }
    }
    bail!(
        "the change-stream tests need Java 17 (java, javac) and Maven (mvn) to install \
         mongo-java-server {MJS_VERSION}: `sudo apt-get install -y openjdk-17-jdk-headless maven`, \
         then run `cargo xtask setup` again"
    )
}
