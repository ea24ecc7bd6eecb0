//! The web console, served at `/` by the same binary: every page, stylesheet and script is
//! compiled in (`include_str!`), so a fresh `tessera serve` shows a working console offline,
//! with no build step and no CDN.
//!
//! Pages are rendered here: the frame (landmarks, the navigation for the permissions the
//! caller holds, who is signed in) and each page's static structure and forms. One small
//! script (`assets/console.js`) enhances them: it sends each form to the JSON API with the
//! CSRF header, fills lists from the API, and follows the session, flag changes and the
//! platform status live. The page never holds a credential: the access and refresh tokens
//! stay in HttpOnly cookies, and the script reads only the CSRF cookie, which is worthless
//! without them. Nothing inline (no `<script>`, no `style=`), so the strict policy of
//! `http.html_csp` applies unchanged.

pub mod reference;
pub mod routes;

use crate::permissions::Perm;

/// A compiled-in file: its name under `/assets/`, content type and text.
pub struct Asset {
    /// The file name.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its content.
    pub body: &'static str,
}

/// The stylesheet, the script and the icon.
pub const ASSETS: [Asset; 3] = [
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
];

/// Which group of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The signed-in person's own pages.
    Account,
    /// Administration, each page behind its permission.
    Admin,
    /// Live views.
    Live,
}

/// One page of the console.
pub struct Page {
    /// Its path.
    pub path: &'static str,
    /// The name the script dispatches on (`<body data-page>`).
    pub id: &'static str,
    /// Its title, in the navigation and the `<title>`.
    pub title: &'static str,
    /// Its navigation group.
    pub section: Section,
    /// Who may open it.
    pub access: Access,
    /// The parts of its content shown only to some of those.
    pub parts: &'static [Part],
    /// Its content, placeholders `{{name}}` filled by the route.
    pub body: &'static str,
}

/// Who may open a page or see a part of one. It mirrors what the API behind it decides, so
/// nobody is shown a form the server would refuse; the API checks again regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The permission needed; `None`: anyone signed in.
    pub needs: Option<Perm>,
    /// Only for the platform's own administrators (callers of the `system` tenant).
    pub platform_only: bool,
}

impl Access {
    /// Anyone signed in.
    pub const ANYONE: Self = Self {
        needs: None,
        platform_only: false,
    };

    /// Callers holding `perm` in their tenant.
    pub const fn needs(perm: Perm) -> Self {
        Self {
            needs: Some(perm),
            platform_only: false,
        }
    }

    /// Callers of the `system` tenant holding `perm`.
    pub const fn platform(perm: Perm) -> Self {
        Self {
            needs: Some(perm),
            platform_only: true,
        }
    }
}

/// A part of a page (a form, usually) for the callers `access` admits. It stands in the
/// page's body as the marker `<!-- part:{name} -->`; for anyone else the marker is dropped.
pub struct Part {
    /// The marker's name.
    pub name: &'static str,
    /// Who sees it.
    pub access: Access,
    /// Its content, with placeholders like the page's.
    pub body: &'static str,
}

/// `page`'s content with each part put in place for the callers `admits`, or dropped.
pub fn assemble(page: &Page, admits: impl Fn(Access) -> bool) -> String {
    let mut body = page.body.to_owned();
    for part in page.parts {
        let marker = format!("<!-- part:{} -->", part.name);
        let shown = if admits(part.access) { part.body } else { "" };
        body = body.replace(&marker, shown);
    }
    body
}

/// Every page behind sign-in, in navigation order.
pub const PAGES: [Page; 11] = [
    Page {
        path: "/account",
        id: "account",
        title: "Profile",
        section: Section::Account,
        access: Access::ANYONE,
        parts: &[],
        body: include_str!("pages/account.html"),
    },
    Page {
        path: "/account/sessions",
        id: "sessions",
        title: "Sessions",
        section: Section::Account,
        access: Access::ANYONE,
        parts: &[],
        body: include_str!("pages/sessions.html"),
    },
    Page {
        path: "/account/security",
        id: "security",
        title: "Security",
        section: Section::Account,
        access: Access::ANYONE,
        parts: &[],
        body: include_str!("pages/security.html"),
    },
    Page {
        path: "/admin/users",
        id: "users",
        title: "Users",
        section: Section::Admin,
        access: Access::needs(Perm::UsersRead),
        parts: &[],
        body: include_str!("pages/users.html"),
    },
    Page {
        path: "/admin/roles",
        id: "roles",
        title: "Roles",
        section: Section::Admin,
        access: Access::needs(Perm::RolesRead),
        parts: &[],
        body: include_str!("pages/roles.html"),
    },
    Page {
        path: "/admin/tenants",
        id: "tenants",
        title: "Tenants",
        section: Section::Admin,
        access: Access::platform(Perm::TenantsRead),
        parts: &[],
        body: include_str!("pages/tenants.html"),
    },
    Page {
        path: "/admin/clients",
        id: "clients",
        title: "Service accounts",
        section: Section::Admin,
        access: Access::needs(Perm::ClientsRead),
        parts: &[],
        body: include_str!("pages/clients.html"),
    },
    Page {
        path: "/admin/flags",
        id: "flags",
        title: "Feature flags",
        section: Section::Admin,
        access: Access::needs(Perm::FlagsRead),
        parts: &[],
        body: include_str!("pages/flags.html"),
    },
    Page {
        path: "/admin/audit",
        id: "audit",
        title: "Audit log",
        section: Section::Admin,
        access: Access::needs(Perm::AuditRead),
        parts: &[],
        body: include_str!("pages/audit.html"),
    },
    Page {
        path: "/live/provisioning",
        id: "provisioning",
        title: "Provisioning",
        section: Section::Live,
        access: Access::ANYONE,
        parts: &[],
        body: include_str!("pages/provisioning.html"),
    },
    Page {
        path: "/status",
        id: "status",
        title: "Platform status",
        section: Section::Live,
        // The status is public; posting is the platform operators' (`POST /api/v1/status/events`).
        access: Access::ANYONE,
        parts: &[Part {
            name: "post",
            access: Access::platform(Perm::StatusWrite),
            body: include_str!("pages/status-post.html"),
        }],
        body: include_str!("pages/status.html"),
    },
];

/// The sign-in page's content.
pub const LOGIN: &str = include_str!("pages/login.html");

/// `text` safe inside HTML text and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `template` with each `{{name}}` replaced by its value, escaped.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), &escape(value));
    }
    out
}

/// Who is signed in, as the frame shows it.
pub struct Frame<'a> {
    /// The page shown.
    pub page: &'a Page,
    /// The pages the caller may open.
    pub visible: Vec<&'a Page>,
    /// The person's name or email.
    pub who: &'a str,
    /// Their tenant's name.
    pub tenant: &'a str,
    /// The name of the CSRF cookie the script echoes.
    pub csrf_cookie: &'a str,
    /// The page's content, filled.
    pub content: String,
}

/// A whole document: head, skip link, header, navigation, the main content.
pub fn document(frame: &Frame<'_>) -> String {
    let mut nav = String::new();
    for (section, label) in [
        (Section::Account, "My account"),
        (Section::Admin, "Administration"),
        (Section::Live, "Live"),
    ] {
        let pages: Vec<_> = frame
            .visible
            .iter()
            .filter(|p| p.section == section)
            .collect();
        if pages.is_empty() {
            continue;
        }
        nav.push_str(&format!(
            "<h2 class=\"nav-heading\">{label}</h2><ul role=\"list\">"
        ));
        for page in pages {
            let current = if page.path == frame.page.path {
                " aria-current=\"page\""
            } else {
                ""
            };
            nav.push_str(&format!(
                "<li><a href=\"{}\"{current}>{}</a></li>",
                page.path, page.title
            ));
        }
        nav.push_str("</ul>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"tessera-csrf-cookie\" content=\"{csrf}\">\n\
         <title>{title} · Tessera</title>\n\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\n\
         <script src=\"/assets/console.js\" defer></script>\n</head>\n\
         <body data-page=\"{id}\">\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
         <header class=\"top\">\n<a class=\"brand\" href=\"/account\">Tessera</a>\n\
         <div class=\"who\"><span class=\"who-name\">{who}</span> \
         <span class=\"who-tenant\">{tenant}</span></div>\n\
         <button type=\"button\" class=\"button ghost\" data-logout>Sign out</button>\n\
         </header>\n<div class=\"shell\">\n\
         <nav class=\"side\" aria-label=\"Console\">{nav}</nav>\n\
         <main id=\"main\" tabindex=\"-1\">\n<h1>{title}</h1>\n{content}\n</main>\n</div>\n\
         <div class=\"toast\" role=\"status\" aria-live=\"polite\" data-toast></div>\n\
         </body>\n</html>\n",
        csrf = escape(frame.csrf_cookie),
        title = frame.page.title,
        id = frame.page.id,
        who = escape(frame.who),
        tenant = escape(frame.tenant),
        content = frame.content,
    )
}

/// The sign-in document: no navigation, one form; `notice` is one of the fixed messages.
pub fn login_document(csrf_cookie: &str, notice: Option<&str>) -> String {
    let notice = match notice {
        Some(text) => format!("<p class=\"notice\" role=\"status\">{}</p>", escape(text)),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"tessera-csrf-cookie\" content=\"{csrf}\">\n\
         <title>Sign in · Tessera</title>\n\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\n\
         <script src=\"/assets/console.js\" defer></script>\n</head>\n\
         <body data-page=\"login\" class=\"centered\">\n\
         <main id=\"main\" class=\"card narrow\">\n<p class=\"brand\">Tessera</p>\n{notice}\n{LOGIN}\n</main>\n\
         <div class=\"toast\" role=\"status\" aria-live=\"polite\" data-toast></div>\n\
         </body>\n</html>\n",
        csrf = escape(csrf_cookie),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            fill("<p>{{name}}</p>", &[("name", "<b>")]),
            "<p>&lt;b&gt;</p>"
        );
    }

    #[test]
    fn a_part_is_in_place_only_for_the_callers_it_admits() {
        let status = PAGES
            .iter()
            .find(|p| p.id == "status")
            .expect("status page");
        let marker = "<!-- part:post -->";
        assert!(status.body.contains(marker));
        let form = "data-form=\"status-post\"";
        let shown = assemble(status, |_| true);
        assert!(shown.contains(form) && !shown.contains(marker));
        let hidden = assemble(status, |access| access == Access::ANYONE);
        assert!(!hidden.contains(form) && !hidden.contains(marker));
        // Every marker a page names has its part, and every part its marker.
        for page in &PAGES {
            for part in page.parts {
                assert!(page.body.contains(&format!("<!-- part:{} -->", part.name)));
            }
            assert_eq!(page.body.matches("<!-- part:").count(), page.parts.len());
        }
    }

    #[test]
    fn no_page_carries_inline_script_or_style() {
        let parts = PAGES
            .iter()
            .flat_map(|p| p.parts.iter().map(|part| part.body));
        let bodies = PAGES.iter().map(|p| p.body).chain(parts).chain([LOGIN]);
        for body in bodies {
            for banned in ["<script", "style=", "<style", " on", "javascript:"] {
                let hit = body.match_indices(banned).find(|(i, _)| {
                    // ` on` is an event handler only when an `=` follows the name.
                    banned != " on"
                        || body[i + 3..]
                            .split(|c: char| !c.is_ascii_alphabetic())
                            .next()
                            .is_some_and(|name| {
                                !name.is_empty() && body[i + 3 + name.len()..].starts_with('=')
                            })
                });
                assert!(hit.is_none(), "`{banned}` in a page");
            }
        }
    }
}
