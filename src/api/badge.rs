//! The status badge, pure: a sync status and a health in, an SVG (shields.io style) out.

use crate::health::{Health, SyncStatus};

const LABEL: &str = "orchestrator";
const GREY: &str = "#9f9f9f";

fn health_color(health: Health) -> &'static str {
    match health {
        Health::Healthy => "#4c1",
        Health::Progressing => "#007ec6",
        Health::Degraded => "#e05d44",
        Health::Missing => GREY,
    }
}

fn sync_color(sync: SyncStatus) -> &'static str {
    match sync {
        SyncStatus::Synced => "#4c1",
        SyncStatus::OutOfSync => "#fe7d37",
        SyncStatus::Unknown => GREY,
    }
}

/// Width of a segment for `text` in 11 px Verdana, roughly (shields.io uses ~7 px a character).
fn width(text: &str) -> usize {
    text.chars().count() * 7 + 12
}

/// `orchestrator | <health> | <sync>`, each segment colored like Argo CD's badge.
pub fn render_badge(sync: SyncStatus, health: Health) -> String {
    let segments = [
        (LABEL, "#555"),
        (health.as_str(), health_color(health)),
        (sync.as_str(), sync_color(sync)),
    ];
    let total: usize = segments.iter().map(|(t, _)| width(t)).sum();
    let mut rects = String::new();
    let mut texts = String::new();
    let mut x = 0;
    for (text, color) in segments {
        let w = width(text);
        rects.push_str(&format!(
            r#"<rect x="{x}" width="{w}" height="20" fill="{color}"/>"#
        ));
        let mid = x * 10 + w * 5;
        texts.push_str(&format!(
            r##"<text x="{mid}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)">{text}</text><text x="{mid}" y="140" transform="scale(.1)">{text}</text>"##
        ));
        x += w;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{LABEL}: {h}, {s}"><title>{LABEL}: {h}, {s}</title><linearGradient id="g" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)">{rects}<rect width="{total}" height="20" fill="url(#g)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="110">{texts}</g></svg>"##,
        h = health.as_str(),
        s = sync.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_names_and_colors_the_state() {
        let svg = render_badge(SyncStatus::Synced, Health::Degraded);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<title>orchestrator: Degraded, Synced</title>"));
        assert!(svg.contains("#e05d44") && svg.contains("#4c1"));
        let other = render_badge(SyncStatus::OutOfSync, Health::Progressing);
        assert!(other.contains("#fe7d37") && other.contains("#007ec6"));
        assert_ne!(svg, other);
    }

    #[test]
    fn segments_add_up_to_the_width() {
        let svg = render_badge(SyncStatus::Unknown, Health::Missing);
        let total = width("orchestrator") + width("Missing") + width("Unknown");
        assert!(svg.contains(&format!(r#"width="{total}""#)), "{svg}");
    }
}
