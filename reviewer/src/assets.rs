//! The app's static files, compiled into the binary: the server needs no asset directory
//! and serves exactly what was tested.

pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub fn get(name: &str) -> Option<Asset> {
    let (content_type, body): (&str, &[u8]) = match name {
        "style.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/style.css"),
        ),
        "player.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/player.js"),
        ),
        "queue.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/queue.js"),
        ),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
