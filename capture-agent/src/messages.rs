//! Every sentence the candidate reads, in one place. French by default; an English table
//! can be added beside `FR` and chosen from the locale.

pub struct Messages {
    pub notice_unavailable: &'static str,
    pub consent_refused: &'static str,
    pub no_camera: &'static str,
    pub no_microphone: &'static str,
    pub candidate_page: &'static str,
    pub page_reopened: &'static str,
    pub withdrawn: &'static str,
    pub ended_by_platform: &'static str,
    pub device_lost: &'static str,
    pub interrupted_before_recording: &'static str,
    pub withdrawal_unsent: &'static str,
    pub already_running: &'static str,
    pub unknown_server: &'static str,
    pub code_needs_server: &'static str,
    pub code_unknown: &'static str,
    pub code_locked: &'static str,
    pub not_all_sent: &'static str,
    pub device_back: &'static str,
    pub recording_started: &'static str,
    pub recording_stopping: &'static str,
    pub uploading_leftovers: &'static str,
    pub draining: &'static str,
    pub all_sent: &'static str,
    pub server_unreachable: &'static str,
    pub chunk_dropped: &'static str,
    pub stream_reopened: &'static str,
    pub token_malformed: &'static str,
    pub spool_full: &'static str,
    pub server_full: &'static str,
    pub disk_low: &'static str,
    pub offline: &'static str,
    pub back_online: &'static str,
}

impl Messages {
    /// Why the recording stopped, in the words both agents use (`candidate-ui`, keyed
    /// `stop_` + the reason as the summary names it).
    pub fn stop_message(&self, reason: crate::refusal::StopReason) -> &'static str {
        let key = format!(
            "stop_{}",
            serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        candidate_ui::text(&key).unwrap_or("L'enregistrement est arrêté.")
    }
}

pub const FR: Messages = Messages {
    notice_unavailable: "Serveur injoignable : la notice affichée est celle fournie avec l'application (même version).",
    consent_refused: "Consentement refusé : aucun enregistrement n'a été effectué ; seul le refus est transmis. Contactez votre centre d'examen pour passer l'épreuve autrement.",
    no_camera: "Aucune caméra trouvée : branchez une webcam puis relancez l'application. L'épreuve ne peut pas commencer sans caméra.",
    no_microphone: "Aucun microphone trouvé : branchez un micro puis relancez l'application. L'épreuve ne peut pas commencer sans micro.",
    candidate_page: "Ouvrez cette adresse dans votre navigateur si elle ne s'est pas ouverte :",
    page_reopened: "La page de l'épreuve a été fermée : l'enregistrement continue. Nouvelle adresse de la page :",
    withdrawn: "Consentement retiré : l'enregistrement est arrêté, le retrait enregistré et ce qui avait été enregistré effacé (sur le serveur et sur cet ordinateur). Votre épreuve à distance ne pourra pas être validée ; contactez votre centre d'examen.",
    ended_by_platform: "La plateforme d'examen a mis fin à l'épreuve : fin de l'enregistrement.",
    device_lost: "La caméra ou le micro ne répond plus (débranché ?) : rebranchez-le ; l'enregistrement reprendra tout seul. L'interruption est notée.",
    code_needs_server: "Pour un code de lancement, indiquez le serveur de l'épreuve (--server) : aucun n'est configuré sur cet ordinateur.",
    code_unknown: "Ce code de lancement est inconnu, déjà utilisé ou expiré : vérifiez-le, ou demandez-en un nouveau sur la plateforme d'examen.",
    code_locked: "Trop de codes erronés depuis cette connexion : patientez quelques minutes avant de réessayer.",
    unknown_server: "Ce lien désigne un serveur d'examen inconnu de cet ordinateur : il est refusé, rien n'est enregistré. Utilisez le lien de la plateforme CLOE Connect ou contactez votre centre d'examen",
    already_running: "L'application enregistre déjà cette épreuve sur cet ordinateur : utilisez la fenêtre déjà ouverte.",
    withdrawal_unsent: "Votre retrait n'a pas pu être transmis au serveur (pas de connexion). L'enregistrement est arrêté et effacé de cet ordinateur ; prévenez votre centre d'examen de votre retrait.",
    not_all_sent: "Une partie de l'enregistrement n'a pas pu être envoyée ; elle reste chiffrée sur cet ordinateur et partira au prochain lancement de l'application. Fragments restants :",
    interrupted_before_recording: "Arrêt demandé avant l'enregistrement : rien n'a été enregistré.",
    device_back: "Caméra et micro de retour : l'enregistrement reprend.",
    recording_started: "Enregistrement en cours. Appuyez sur Ctrl+C pour terminer.",
    recording_stopping: "Fin de l'enregistrement, finalisation du dernier fragment…",
    uploading_leftovers: "Envoi des fragments restant d'une session précédente…",
    draining: "Envoi des derniers fragments",
    all_sent: "Tous les fragments ont été reçus par le serveur. Vous pouvez fermer cette fenêtre.",
    server_unreachable: "Serveur injoignable : les fragments restent chiffrés sur ce poste et seront envoyés dès le retour de la connexion.",
    chunk_dropped: "Le serveur ne pourra jamais accepter ce fragment ; il est retiré de la file d'envoi (motif noté dans dropped.log) :",
    stream_reopened: "Le serveur ne reconnaît plus la session d'enregistrement en cours : l'enregistrement continue dans une nouvelle session.",
    server_full: "Le serveur ne peut pas stocker l'enregistrement pour le moment : les fragments restent chiffrés sur ce poste et seront renvoyés automatiquement. Vous n'avez rien à faire.",
    spool_full: "Le disque de cet ordinateur est plein : l'enregistrement continue, les fragments sont gardés en mémoire (jusqu'à 96 Mo) en attendant d'être envoyés. Libérez de l'espace disque si vous le pouvez.",
    disk_low: "Espace disque faible pour l'enregistrement : la qualité vidéo est réduite pour économiser la place. Libérez de l'espace disque si vous le pouvez ; l'épreuve continue.",
    offline: "Hors ligne : l'enregistrement continue sur ce poste, chiffré. En attente d'envoi :",
    back_online: "Connexion rétablie : envoi des fragments en attente.",
    token_malformed: "Le lien de lancement est incomplet ou mal copié : recopiez-le en entier depuis la plateforme d'examen.",
};

pub fn current() -> &'static Messages {
    &FR
}

/// `capture-agent receipt verify`.
pub struct ReceiptText {
    pub valid: &'static str,
    pub invalid: &'static str,
    pub key_needed: &'static str,
    pub unreadable: &'static str,
}

const RECEIPT_FR: ReceiptText = ReceiptText {
    valid: "Reçu valide : l'enregistrement de l'épreuve {attempt} a été détruit le {date} (motif : {reason}). Signé par la clé du serveur d'examen {key_id}.",
    invalid: "Reçu NON valide : il n'a pas été signé par la clé du serveur d'examen, ou il a été modifié depuis.",
    key_needed: "Pour vérifier un reçu, il faut la clé publique du serveur d'examen : --public-key CLÉ (le serveur la publie à l'adresse /api/public/v1/receipts/public-key). La clé écrite dans le reçu ne suffit pas : un faussaire y mettrait la sienne.",
    unreadable: "Ce fichier n'est pas un reçu de destruction lisible",
};

pub fn receipt_text() -> &'static ReceiptText {
    &RECEIPT_FR
}

/// `capture-agent check`'s report.
pub struct CheckText {
    pub title: &'static str,
    pub labels: [(&'static str, &'static str); 6],
    pub ok: &'static str,
    pub not_ok: &'static str,
    pub fit: &'static str,
    pub unfit: &'static str,
    pub no_camera: &'static str,
    pub no_microphone: &'static str,
    pub detection_failed: &'static str,
    pub available: &'static str,
    pub frame: (&'static str, &'static str),
    pub sound: (&'static str, &'static str),
    pub does_not_open: &'static str,
    pub check_failed: &'static str,
    pub gpu: &'static str,
    pub cpu: &'static str,
    pub no_encoder: &'static str,
    pub free: &'static str,
    pub low: &'static str,
    pub unmeasured: &'static str,
    pub reachable: &'static str,
    pub unreachable: &'static str,
    pub untested: &'static str,
    pub slow: &'static str,
}

pub const CHECK_FR: CheckText = CheckText {
    title: "CLOE Connect : vérification de l'ordinateur (rien n'est enregistré)",
    labels: [
        ("camera", "Caméra"),
        ("microphone", "Microphone"),
        ("encoder", "Encodage vidéo"),
        ("disk", "Espace disque"),
        ("server", "Serveur"),
        ("upload", "Connexion (envoi)"),
    ],
    ok: "OK ",
    not_ok: "NON",
    fit: "Verdict : cet ordinateur est prêt pour l'épreuve.",
    unfit: "Verdict : cet ordinateur n'est pas prêt ; corrigez les lignes marquées NON puis relancez la vérification.",
    no_camera: "aucune caméra trouvée",
    no_microphone: "aucun microphone trouvé",
    detection_failed: "détection impossible",
    available: "disponibles",
    frame: (", image reçue", ", aucune image reçue"),
    sound: (", son reçu", ", aucun son reçu"),
    does_not_open: "ne s'ouvre pas",
    check_failed: "la vérification a échoué",
    gpu: "carte graphique",
    cpu: "processeur",
    no_encoder: "aucun encodeur H.264",
    free: "Mo libres",
    low: " (faible : qualité réduite)",
    unmeasured: "mesure impossible",
    reachable: "joignable, notice",
    unreachable: "injoignable",
    untested: "test impossible",
    slow: " (lente : une partie sera envoyée après l'épreuve)",
};

pub fn check() -> &'static CheckText {
    &CHECK_FR
}

#[cfg(test)]
mod tests {
    use crate::refusal::StopReason::*;

    #[test]
    fn every_stop_reason_has_its_own_sentence() {
        for r in [
            TokenRefused,
            ConsentMissing,
            AttemptClosed,
            RecordingDestroyed,
            Redirected,
            UntrustedCertificate,
            TooManyStreams,
        ] {
            let key = format!(
                "stop_{}",
                serde_json::to_value(r).unwrap().as_str().unwrap()
            );
            assert_eq!(
                super::current().stop_message(r),
                candidate_ui::text(&key).unwrap_or_else(|| panic!("{key} has no sentence"))
            );
        }
    }
}
