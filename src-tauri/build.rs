// The Tauri config lives at the repository root (DESIGN.md §1).
fn main() {
    let attrs = tauri_build::Attributes::new().config_path("../tauri.conf.json");
    if let Err(e) = tauri_build::try_build(attrs) {
        println!("cargo:warning=tauri build failed: {e:#}");
        std::process::exit(1);
    }
}
