//! What the candidate reads and sees, shared by the two capture agents: the native agent's
//! local page and the browser agent the server serves. One table of words and one
//! stylesheet, so the two never drift apart; no logic here.

/// The stylesheet of both pages.
pub const PAGE_CSS: &str = include_str!("../assets/page.css");

/// The steps both pages show (notice, consent, check, recording, end, withdrawal), with the
/// same ids, so that each page's script and the tests find the same elements.
const STEPS_HTML: &str = include_str!("../assets/steps.html");

/// The title and the recording indicator above the steps.
const HEADER_HTML: &str = include_str!("../assets/header.html");

/// A page: `shell` with its `<!--header-->` and `<!--steps-->` markers replaced by the
/// shared header and steps, whose `<!--preview-->` marker becomes `preview` (the native
/// page shows JPEGs, the browser a live video element).
pub fn compose_page(shell: &str, preview: &str) -> String {
    assert!(
        shell.contains("<!--steps-->") && shell.contains("<!--header-->"),
        "a page shell has the header and steps markers"
    );
    shell
        .replace("<!--header-->", HEADER_HTML.trim_end())
        .replace(
            "<!--steps-->",
            &STEPS_HTML.replace("<!--preview-->", preview),
        )
}

/// The pages' words, by key (`data-text` in the HTML, `T.key` in the scripts): the native
/// agent's local page (`capture-agent/src/page/assets/`) and the browser agent
/// (`web-agent/`) read the same table. French; an English table would sit beside it.
pub const PAGE_FR: &[(&str, &str)] = &[
    ("title", "CLOE Connect : enregistrement de l'épreuve"),
    ("recording", "Enregistrement en cours"),
    ("notice_version", "Version de la notice :"),
    ("consent_box", "J'ai lu cette information et j'accepte l'enregistrement de mon épreuve (webcam, microphone, données de connexion)."),
    ("accept", "Accepter et continuer"),
    ("refuse", "Refuser"),
    ("refuse_confirm", "Sans votre accord, rien n'est enregistré, mais l'épreuve ne peut pas se dérouler à distance. Confirmez-vous le refus ?"),
    ("refuse_yes", "Oui, je refuse"),
    ("refuse_no", "Non, revenir à la notice"),
    ("refused_title", "Vous avez refusé l'enregistrement"),
    ("refused_body", "Rien n'a été enregistré. Seul votre refus a été transmis, pour que le centre d'examen vous propose une autre façon de passer l'épreuve (par exemple dans un centre agréé). Contactez votre centre d'examen. Vous pouvez fermer cette fenêtre."),
    ("refused_sending", "Envoi de votre refus…"),
    ("refused_unsent", "Votre refus n'a pas pu être transmis (pas de connexion au serveur). Rien n'a été enregistré. Prévenez votre centre d'examen que vous avez refusé."),
    ("check_title", "Vérification de votre matériel"),
    ("check_intro", "Rien n'est enregistré pendant cette vérification. Vérifiez que votre visage est bien visible et que la barre du micro bouge quand vous parlez."),
    ("preview_alt", "Image de votre caméra"),
    ("preview_waiting", "En attente de l'image de la caméra…"),
    ("camera", "Caméra"),
    ("microphone", "Microphone"),
    ("level", "Niveau du microphone"),
    ("upload_test", "Tester la connexion"),
    ("upload_testing", "Test de la connexion en cours…"),
    ("upload_good", "Connexion suffisante : l'enregistrement sera envoyé au fil de l'épreuve."),
    ("upload_slow", "Connexion lente : l'épreuve peut avoir lieu ; une partie de l'enregistrement sera envoyée après la fin, laissez alors cette fenêtre ouverte."),
    ("upload_too_slow", "Connexion très lente : l'enregistrement sera envoyé surtout après l'épreuve, ce qui peut prendre longtemps. Rapprochez-vous de votre box ou utilisez un câble si vous le pouvez."),
    ("upload_unreachable", "Le serveur ne répond pas : vérifiez votre connexion à Internet. L'épreuve peut commencer, l'enregistrement sera envoyé dès le retour de la connexion."),
    ("disk_good", "Espace disque suffisant :"),
    ("disk_low", "Espace disque faible : la qualité vidéo sera réduite. Espace libre :"),
    ("disk_too_low", "Espace disque insuffisant : libérez de la place avant l'épreuve. Espace libre :"),
    ("megabytes", "Mo"),
    ("encoder_hw", "Encodage vidéo par la carte graphique :"),
    ("encoder_sw", "Encodage vidéo par le processeur :"),
    ("no_camera", "Aucune caméra trouvée. Branchez une webcam puis relancez l'application ; l'épreuve ne peut pas commencer sans caméra."),
    ("no_microphone", "Aucun microphone trouvé. Branchez un micro puis relancez l'application ; l'épreuve ne peut pas commencer sans micro."),
    ("start", "Commencer l'enregistrement"),
    ("device_lost", "La caméra ou le micro ne répond plus (débranché ?). Rebranchez-le : l'enregistrement reprendra tout seul. L'interruption est notée."),
    ("device_lost_short", "Caméra ou micro indisponible"),
    ("upload_state_ok", "Envoi à jour."),
    ("upload_state_waiting", "En attente d'envoi (minutes) :"),
    ("upload_state_offline", "Hors ligne : l'enregistrement continue sur cet ordinateur, chiffré, et sera envoyé plus tard. En attente (minutes) :"),
    ("finish", "Terminer l'épreuve"),
    ("finish_confirm", "Terminer l'épreuve maintenant ? L'enregistrement s'arrêtera."),
    ("finish_yes", "Oui, terminer"),
    ("finish_no", "Non, continuer"),
    ("withdraw", "Retirer mon consentement"),
    ("withdraw_confirm", "Si vous retirez votre consentement, l'enregistrement s'arrête, ce qui a été enregistré est effacé et votre épreuve à distance ne pourra pas être validée : le centre d'examen vous contactera. Confirmez-vous ?"),
    ("withdraw_yes", "Oui, retirer mon consentement"),
    ("withdraw_no", "Non, continuer l'épreuve"),
    ("finishing_title", "Fin de l'épreuve : envoi des derniers fragments"),
    ("finishing_body", "Ne fermez pas cette fenêtre et n'éteignez pas l'ordinateur pendant l'envoi."),
    ("ended_by_platform", "La plateforme d'examen a mis fin à l'épreuve."),
    ("fragments_sent", "fragments envoyés sur"),
    ("done_title", "Tout est envoyé"),
    ("done_body", "Le serveur a bien reçu tout l'enregistrement. Vous pouvez fermer cette fenêtre."),
    ("server", "Serveur qui reçoit l'enregistrement :"),
    ("withdrawn_title", "Consentement retiré"),
    ("receipt_checked", "Reçu de destruction vérifié : effacement du {date}, signé par la clé publiée du serveur d'examen ({key_id}). Téléchargez-le pour le conserver."),
    ("receipt_unchecked", "Un reçu de destruction a été délivré, mais il n'a pas pu être vérifié sur cette page : téléchargez-le et faites-le vérifier par votre centre d'examen."),
    ("receipt_download", "Télécharger le reçu de destruction"),
    ("withdrawn_sending", "Envoi de votre retrait…"),
    ("withdrawn_unsent", "Votre retrait n'a pas pu être transmis au serveur (pas de connexion). L'enregistrement est arrêté et effacé de cet ordinateur. Prévenez votre centre d'examen de votre retrait. Vous pouvez fermer cette fenêtre."),
    ("withdrawn_body", "L'enregistrement est arrêté et votre retrait a été enregistré : ce qui avait été enregistré est effacé, sur le serveur comme sur cet ordinateur. Votre épreuve à distance ne pourra pas être validée : contactez votre centre d'examen. Vous pouvez fermer cette fenêtre."),
    ("failed_title", "L'enregistrement ne peut pas continuer"),
    ("leave_warning", "L'envoi n'est pas terminé : gardez cette fenêtre ouverte."),
    ("stop_token_refused", "Le serveur refuse votre lien de lancement (inconnu, expiré ou révoqué). L'enregistrement est arrêté ; ce qui a été enregistré reste chiffré sur ce poste. Contactez le centre d'examen pour obtenir un nouveau lien."),
    ("stop_consent_missing", "Votre consentement n'a pas été enregistré par le serveur. L'enregistrement est arrêté ; relancez l'application pour donner votre consentement."),
    ("stop_attempt_closed", "Votre épreuve est terminée ou votre consentement a été retiré : aucun nouvel enregistrement n'est possible. Vous pouvez fermer cette fenêtre."),
    ("stop_recording_destroyed", "L'enregistrement de cette épreuve a déjà été supprimé par le serveur : rien de plus ne sera envoyé, et ce qui en restait sur cet ordinateur est effacé."),
    ("stop_redirected", "Le serveur a répondu par une redirection, que l'application refuse de suivre par sécurité. Vérifiez l'adresse du serveur ou contactez le centre d'examen."),
    ("stop_untrusted_certificate", "Le certificat du serveur n'est pas reconnu : la connexion n'est pas sûre et rien n'est envoyé. Contactez le centre d'examen."),
    ("stop_too_many_streams", "Trop de sessions d'enregistrement ont été ouvertes pour cette épreuve. L'enregistrement est arrêté ; contactez le centre d'examen."),
    ("browser_loading", "Préparation de l'enregistrement…"),
    ("browser_unsupported_title", "Ce navigateur ne peut pas enregistrer l'épreuve"),
    ("browser_unsupported_body", "Ouvrez le même lien dans une version récente de Google Chrome, Microsoft Edge ou Firefox (à jour), sur un ordinateur. Safari et les navigateurs de téléphone ne conviennent pas. Rien n'a été enregistré."),
    ("browser_no_link", "Ce lien de lancement est incomplet : recopiez-le en entier depuis la plateforme d'examen, ou saisissez votre code de lancement ci-dessous."),
    ("browser_code_title", "Code de lancement"),
    ("browser_code_body", "Saisissez le code de 8 caractères que la plateforme d'examen vous a donné (par exemple K7F4-3QX9)."),
    ("browser_code_label", "Code de lancement"),
    ("browser_code_go", "Valider le code"),
    ("browser_code_unknown", "Ce code de lancement est inconnu, déjà utilisé ou expiré : vérifiez-le, ou demandez-en un nouveau sur la plateforme d'examen."),
    ("browser_code_locked", "Trop de codes erronés depuis cette connexion : patientez quelques minutes avant de réessayer."),
    ("browser_permission_title", "Accès à la caméra et au micro refusé"),
    ("browser_permission_body", "Le navigateur n'autorise pas cette page à utiliser la caméra ou le micro. Cliquez sur l'icône de caméra ou de cadenas à gauche de l'adresse, choisissez « Autoriser » pour la caméra et le micro, puis cliquez sur « Réessayer ». Vérifiez aussi qu'aucune autre application n'utilise la caméra. Rien n'a été enregistré."),
    ("browser_permission_retry", "Réessayer"),
    ("browser_resume_title", "Reprendre l'enregistrement"),
    ("browser_resume_body", "La page a été rechargée pendant l'épreuve. Cliquez sur le bouton pour reprendre l'enregistrement ; ce qui restait à envoyer part aussitôt. L'interruption est notée."),
    ("browser_resume", "Reprendre l'enregistrement"),
    ("browser_storage_good", "Espace de stockage du navigateur suffisant :"),
    ("browser_storage_low", "Espace de stockage du navigateur faible : la qualité vidéo sera réduite. Espace disponible :"),
    ("browser_storage_too_low", "Espace de stockage du navigateur insuffisant : libérez de la place sur le disque avant l'épreuve. Espace disponible :"),
    ("browser_keep_open", "Gardez cet onglet ouvert pendant toute l'épreuve : vous pouvez passer à l'onglet de l'examen, l'enregistrement continue."),
    ("browser_resumed", "L'enregistrement a repris après le rechargement de la page ; l'interruption est notée. Les fragments restants sont envoyés."),
    ("browser_notice_unreachable", "Le serveur de l'épreuve ne répond pas : vérifiez votre connexion à Internet puis rechargez la page."),
    ("browser_wiped", "L'enregistrement de cette épreuve a été supprimé par le serveur : ce qui restait dans ce navigateur a été effacé."),
    ("link_expired", "Ce lien a déjà servi. Utilisez l'adresse que l'application vient d'afficher ou relancez-la."),
];

/// One sentence by key.
pub fn text(key: &str) -> Option<&'static str> {
    PAGE_FR.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The table as a JSON object, as the pages load it.
pub fn page_json() -> String {
    let map: serde_json::Map<String, serde_json::Value> = PAGE_FR
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_composed_page_has_every_step_once_and_the_preview_given() {
        let page = super::compose_page(
            "<!--header-->\n<main>\n  <!--steps-->\n</main>",
            "<img id=\"preview\">",
        );
        for id in [
            "rec",
            "elapsed",
            "phase-notice",
            "phase-check",
            "phase-recording",
            "phase-finishing",
            "phase-done",
            "phase-withdrawn",
            "phase-failed",
        ] {
            assert_eq!(page.matches(&format!("id=\"{id}\"")).count(), 1, "{id}");
        }
        assert!(page.contains("<img id=\"preview\">") && !page.contains("<!--"));
    }

    #[test]
    fn every_key_is_unique_and_every_text_is_set() {
        let mut keys: Vec<_> = super::PAGE_FR.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key appears twice");
        assert!(super::PAGE_FR.iter().all(|(_, v)| !v.trim().is_empty()));
    }
}
