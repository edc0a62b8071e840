//! `sqlx::migrate!` embeds the migration files at compile time, but cargo only notices
//! changes to files it was told about: a new migration file must rebuild this crate too.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations/sqlite");
    println!("cargo:rerun-if-changed=migrations/postgres");
}
