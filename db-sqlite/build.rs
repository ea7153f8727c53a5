// `sqlx::migrate!` embeds the migrations at compile time; cargo does not look at a
// directory by itself, so a new migration file would not rebuild this crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
