//! The browser client (seed 001's `/`, `/styles.css`, `/app.js`, `/app.*.js`), built into the
//! binary so a room server is one file to deploy. `/r/<room>` serves the same page, which reads
//! the room from its path: the room link that browsers and the app both open.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Every file of the client: (name, content type, body).
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "styles.css",
        "text/css; charset=utf-8",
        include_str!("../web/styles.css"),
    ),
    (
        "app.js",
        "application/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "app.rtc.js",
        "application/javascript; charset=utf-8",
        include_str!("../web/app.rtc.js"),
    ),
    (
        "app.media.js",
        "application/javascript; charset=utf-8",
        include_str!("../web/app.media.js"),
    ),
    (
        "app.ui.js",
        "application/javascript; charset=utf-8",
        include_str!("../web/app.ui.js"),
    ),
];

/// The page's policy: its own scripts and styles only, media and WebSockets to this origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
    connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn serve(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /` and `GET /r/<room>`: the page (it validates the room itself and says what is wrong).
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /r/<room>`.
pub async fn room(Path(_room): Path<String>) -> Response {
    serve("index.html")
}

/// `GET /<file>`: the stylesheet and scripts; anything else is 404.
pub async fn file(Path(name): Path<String>) -> Response {
    if name == "index.html" {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    serve(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_loads_is_served() {
        let (_, _, html) = FILES.first().copied().unwrap_or_default();
        for (name, _, _) in FILES.iter().skip(1) {
            assert!(
                html.contains(&format!("/{name}")),
                "index.html loads {name}"
            );
        }
    }
}
