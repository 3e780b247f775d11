//! The layers of `gateway/src` (ARCHITECTURE.md, "Layers"): a module may
//! name (`crate::x`) only modules of its own layer's position or below.
//! Read from the source, outside `#[cfg(test)]` parts and comments; a new
//! upward arrow fails here with the file and the path it names.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top. Modules on one line may not name each other.
const LAYERS: &[&[&str]] = &[
    &["domain", "redact"],
    &["auth", "tls"],
    &["config", "metrics"],
    &["store", "sink"],
    &["ingest", "tickets", "user_admin"],
    &["alarms", "live"],
    &["commissioning", "northbound", "notify"],
    &["api", "replica"],
    &["app", "demo", "cli", "heap"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// Every `crate::name` a source text uses outside tests and comments. An
/// item under `#[cfg(test)]` is skipped to its closing brace.
fn named(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // Inside a test item: the brace depth reached, once its body opened.
    let mut skipping: Option<(bool, i64)> = None;
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if let Some((opened, depth)) = skipping.as_mut() {
            for c in code.chars() {
                match c {
                    '{' => {
                        *opened = true;
                        *depth += 1;
                    }
                    '}' => *depth -= 1,
                    _ => {}
                }
            }
            let one_line_item = !*opened && code.trim_end().ends_with(';');
            if (*opened && *depth <= 0) || one_line_item {
                skipping = None;
            }
            continue;
        }
        if code.trim_start().starts_with("#[cfg(test)]") {
            skipping = Some((false, 0));
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_names_only_its_own_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut upward = Vec::new();
    let mut unplaced = BTreeMap::new();
    for f in &all {
        let module = module_of(&src, f);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(mine) = layer_of(&module) else {
            unplaced.insert(module, f.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(f).expect("source");
        for (line, name) in named(&text) {
            if name == module {
                continue;
            }
            match layer_of(&name) {
                Some(theirs) if theirs < mine => {}
                Some(_) => upward.push(format!("{}:{line}: crate::{name}", f.display())),
                None => {
                    unplaced.insert(name, format!("{}:{line}", f.display()));
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS and ARCHITECTURE.md): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "arrows that point up or sideways:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_arrow() {
    let text = "use crate::store::Store; // crate::api in a comment\n\
                #[cfg(test)]\nmod tests {\n    use crate::app;\n    fn f() { crate::api::x(); }\n}\n\
                #[cfg(test)]\nmod more;\n\
                fn g() { crate::api::y(); }\n";
    assert_eq!(
        named(text),
        [(1, "store".to_string()), (9, "api".to_string())]
    );
    assert!(layer_of("store") < layer_of("api"));
}
