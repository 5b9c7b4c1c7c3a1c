//! The Guestpass desktop shell: a window, the command bridge to `guestpass-core`, and
//! nothing clever. Every command is a one-line delegation (see `commands.rs`).

mod commands;
mod opener;
mod recovery;
mod save_dialog;
mod settings;
mod single_instance;
mod state;

use tauri::Manager;

pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "guestpass=info,guestpass_core=info".into()),
        )
        .init();
    if let Some(why) = missing_display() {
        eprintln!("guestpass: {why}");
        std::process::exit(2);
    }
    // Before the builder, which opens the config's window: a second launch on this data
    // dir hands over to the open window and never shows one of its own.
    let context = tauri::generate_context!("../tauri.conf.json");
    let instance = match single_instance::start(&context.config().identifier) {
        single_instance::Start::Open(instance) => instance,
        single_instance::Start::Exit(code) => std::process::exit(code),
    };
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_dialog::init())
        .setup(move |app| {
            if let Some(instance) = &instance {
                single_instance::check_same_dir(instance, app.handle());
                instance.attach(app.handle());
            }
            // Held until the process ends: the lock goes with it.
            app.manage(instance);
            let state = tauri::async_runtime::block_on(state::AppState::open(app.handle()));
            app.manage(state);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::get_session,
            commands::sign_in_anonymous,
            commands::list_notes,
            commands::create_note,
            commands::update_note,
            commands::delete_note,
            commands::set_preference,
            commands::upgrade,
            commands::dismiss_upgrade,
            commands::sync_status,
            commands::sync_now,
            commands::social_providers,
            commands::upgrade_with_social,
            commands::cancel_social,
            commands::guest_summary,
            commands::sign_in_email,
            commands::sign_in_social,
            commands::complete_sign_in,
            commands::sign_out,
            commands::request_password_reset,
            commands::resend_verification,
            commands::change_password,
            commands::deletion_summary,
            commands::delete_account,
            commands::require_full_account,
            commands::export_data,
            commands::settings,
            commands::check_backend,
            commands::save_settings,
            commands::diagnostics,
            recovery::recovery_phrase,
            recovery::new_recovery_phrase,
            recovery::restore_guest,
            recovery::dismiss_notice,
        ])
        .run(context);
    if let Err(e) = result {
        eprintln!("guestpass: the app could not start: {e}");
        std::process::exit(1);
    }
}

/// GTK panics without a display; say what is missing instead.
fn missing_display() -> Option<&'static str> {
    let linux_like = cfg!(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "openbsd"
    ));
    let has = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    (linux_like && !has("DISPLAY") && !has("WAYLAND_DISPLAY")).then_some(
        "no graphical display found (neither DISPLAY nor WAYLAND_DISPLAY is set). Run it from a desktop session, or headless under Xvfb: xvfb-run -a guestpass",
    )
}
