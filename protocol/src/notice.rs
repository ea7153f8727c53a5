//! The information notice shown before consent (GDPR art. 13, CNIL guidance on remote exam
//! surveillance). The server serves it (`GET /api/agent/v1/notice`) and records the version
//! each consent names; the agent shows the server's copy, or this one (the DPO named generically) when the
//! server cannot be reached at the start (store-and-forward). One text, one version: change
//! a word here and bump [`NOTICE_VERSION`].

use serde::{Deserialize, Serialize};

/// Version of the information notice; bump it whenever the text below changes.
pub const NOTICE_VERSION: &str = "2026-12-v4";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub version: String,
    /// BCP 47 tag of the text (`fr`).
    pub language: String,
    pub title: String,
    pub sections: Vec<NoticeSection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeSection {
    pub heading: String,
    pub body: String,
}

/// Who answers the candidate's requests, named by the deployment (`[notice] dpo_contact`).
pub const DEFAULT_DPO_CONTACT: &str = "le délégué à la protection des données (DPO) de CCI France";

/// How long a recording no decision covers is kept at most, as a deployment configures it
/// (`[retention] ceiling`); the agent's own copy states the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    Months(u32),
    Days(u32),
}

impl Ceiling {
    pub const DEFAULT: Ceiling = Ceiling::Months(2);

    fn words(self) -> String {
        match self {
            Ceiling::Months(n) => format!("{n} mois"),
            Ceiling::Days(1) => "1 jour".into(),
            Ceiling::Days(n) => format!("{n} jours"),
        }
    }
}

const FR: [(&str, &str); 7] = [
    (
        "Ce qui est enregistré",
        "Pendant toute l'épreuve : l'image de votre webcam, le son de votre microphone et vos données de connexion \
         (adresse IP, version du logiciel, système). Votre ordinateur en tire aussi des repères d'activité (mouvement et \
         niveau sonore par seconde) et une vignette par fragment, chiffrés avec l'enregistrement. Rien n'est enregistré \
         avant votre accord ni après la fin de l'épreuve. Personne ne vous regarde en direct.",
    ),
    (
        "Pourquoi",
        "Uniquement pour vérifier, après l'épreuve, qu'aucune irrégularité n'a eu lieu. Rien d'autre : aucune \
         reconnaissance faciale ni biométrique, aucune note de suspicion automatique.",
    ),
    (
        "Qui peut le voir",
        "Seuls les relecteurs habilités de CCI France affectés à votre session, après l'épreuve. Le jury voit leurs \
         conclusions et, si besoin, les passages signalés. Chaque consultation est tracée.",
    ),
    (
        "Combien de temps",
        "L'enregistrement est supprimé dès la validation sans réserve du procès-verbal de la session. En cas de \
         contestation ou de refus, il est conservé 2 mois au plus à compter de la décision, puis supprimé. Sans décision du jury, il est \
         supprimé au plus tard {ceiling} après la fin de l'épreuve. Si vous retirez votre consentement, il est \
         supprimé aussitôt. Seule une procédure disciplinaire ou judiciaire en cours peut suspendre la suppression. \
         Chaque suppression donne lieu à un reçu signé.",
    ),
    (
        "Sécurité",
        "L'enregistrement est chiffré sur votre ordinateur avant tout envoi ; rien n'est écrit en clair sur votre disque.",
    ),
    (
        "Vos droits",
        "Vous disposez des droits d'accès, de rectification, d'effacement, de limitation, d'opposition et de \
         portabilité, et vous pouvez retirer votre consentement à tout moment pendant l'épreuve (l'enregistrement \
         s'arrête alors et ce qui a été enregistré est supprimé ; votre épreuve à distance ne pourra pas être validée).",
    ),
    (
        "À qui vous adresser",
        "Pour exercer vos droits : {dpo}. Vous pouvez aussi adresser une réclamation à la CNIL (www.cnil.fr).",
    ),
];

/// The current notice, in French, naming the deployment's data protection officer and
/// retention ceiling.
pub fn current(dpo_contact: &str, ceiling: Ceiling) -> Notice {
    Notice {
        version: NOTICE_VERSION.into(),
        language: "fr".into(),
        title: "Information sur l'enregistrement de votre épreuve CLOE Connect".into(),
        sections: FR
            .iter()
            .map(|(h, b)| NoticeSection {
                heading: (*h).into(),
                body: b
                    .replace("{dpo}", dpo_contact)
                    .replace("{ceiling}", &ceiling.words()),
            })
            .collect(),
    }
}

impl Notice {
    /// Plain text, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.title);
        for s in &self.sections {
            out.push_str(&format!("\n{}\n{}\n", s.heading, s.body));
        }
        out
    }

    /// Bounds on a notice received from a server, so that a hostile or broken one cannot
    /// flood the candidate's page.
    pub fn is_plausible(&self) -> bool {
        let short = |s: &str, max: usize| !s.trim().is_empty() && s.len() <= max;
        short(&self.version, 64)
            && short(&self.language, 16)
            && short(&self.title, 300)
            && (1..=20).contains(&self.sections.len())
            && self
                .sections
                .iter()
                .all(|s| short(&s.heading, 200) && short(&s.body, 4000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CNIL's list: what, why, who, how long, the rights (withdrawal included), whom to
    /// ask, the complaint to the CNIL.
    #[test]
    fn the_notice_says_what_the_law_asks() {
        let n = current("dpo@example.org", Ceiling::Days(30));
        let text = n.to_text().to_lowercase();
        for needle in [
            "webcam",
            "microphone",
            "données de connexion",
            "irrégularité",
            "relecteurs habilités",
            "jury",
            "validation sans réserve",
            "2 mois",
            "sans décision du jury",
            "au plus tard 30 jours après la fin",
            "supprimé aussitôt",
            "accès",
            "rectification",
            "effacement",
            "limitation",
            "opposition",
            "portabilité",
            "retirer votre consentement",
            "dpo@example.org",
            "cnil",
        ] {
            assert!(
                text.contains(needle),
                "the notice does not mention {needle:?}"
            );
        }
        assert!(n.is_plausible());
        assert_eq!(n.version, NOTICE_VERSION);
    }

    #[test]
    fn implausible_notices_are_refused() {
        let mut n = current(DEFAULT_DPO_CONTACT, Ceiling::DEFAULT);
        n.sections.clear();
        assert!(!n.is_plausible());
        let mut n = current(DEFAULT_DPO_CONTACT, Ceiling::DEFAULT);
        n.sections[0].body = "x".repeat(5000);
        assert!(!n.is_plausible());
        let mut n = current(DEFAULT_DPO_CONTACT, Ceiling::DEFAULT);
        n.version = " ".into();
        assert!(!n.is_plausible());
    }
}
