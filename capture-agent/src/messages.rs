//! Every sentence the candidate reads, in one place. French by default; an English table
//! can be added beside `FR` and chosen from the locale.

pub struct Messages {
    pub notice_title: &'static str,
    pub notice_body: &'static str,
    pub consent_prompt: &'static str,
    pub consent_refused: &'static str,
    pub consent_needs_terminal: &'static str,
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
    pub stop_token_refused: &'static str,
    pub stop_consent_missing: &'static str,
    pub stop_attempt_closed: &'static str,
    pub stop_recording_destroyed: &'static str,
    pub stop_redirected: &'static str,
    pub stop_untrusted_certificate: &'static str,
    pub stop_too_many_streams: &'static str,
}

impl Messages {
    pub fn stop_message(&self, reason: crate::refusal::StopReason) -> &'static str {
        use crate::refusal::StopReason::*;
        match reason {
            TokenRefused => self.stop_token_refused,
            ConsentMissing => self.stop_consent_missing,
            AttemptClosed => self.stop_attempt_closed,
            RecordingDestroyed => self.stop_recording_destroyed,
            Redirected => self.stop_redirected,
            UntrustedCertificate => self.stop_untrusted_certificate,
            TooManyStreams => self.stop_too_many_streams,
        }
    }
}

pub const FR: Messages = Messages {
    notice_title: "Information sur l'enregistrement de votre épreuve CLOE Connect",
    notice_body: "\
Pendant toute la durée de l'épreuve, votre webcam (image) et votre microphone (son) sont
enregistrés, ainsi que vos données de connexion (adresse IP, version du logiciel, système).
Votre ordinateur en tire aussi des repères d'activité (mouvement et niveau sonore par
seconde) et une vignette par fragment, chiffrés avec l'enregistrement. Personne ne vous
regarde en direct.

Pourquoi : uniquement pour vérifier, après l'épreuve, qu'aucune irrégularité n'a eu lieu.
Aucune reconnaissance faciale ni biométrique, aucune note de suspicion automatique.

Qui peut voir l'enregistrement : seuls les relecteurs habilités de CCI France affectés à
votre session, après l'épreuve. Le jury ne voit que leurs conclusions, jamais les images.
Chaque consultation est tracée.

Durée de conservation : l'enregistrement est supprimé dès la validation sans réserve du
procès-verbal de la session ; en cas de contestation ou de refus, il est conservé 2 mois à
compter de la décision, puis supprimé. Sans décision, il est supprimé au plus tard 2 mois
après la fin de l'épreuve. Seule une procédure disciplinaire ou judiciaire en cours peut
suspendre la suppression. Chaque suppression donne lieu à un reçu signé.

Sécurité : l'enregistrement est chiffré sur votre ordinateur avant tout envoi ; rien n'est
écrit en clair sur votre disque.

Vos droits : accès, rectification, effacement, limitation, opposition, portabilité et
retrait du consentement, auprès du délégué à la protection des données de CCI France ;
réclamation possible auprès de la CNIL.",
    consent_prompt: "Tapez OUI pour accepter l'enregistrement et commencer, ou toute autre réponse pour refuser : ",
    consent_refused: "Consentement refusé : aucun enregistrement n'a été effectué.",
    consent_needs_terminal: "Le consentement doit être donné de façon explicite (option --consent pour un lancement scripté).",
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
    stop_token_refused: "Le serveur refuse votre lien de lancement (inconnu, expiré ou révoqué). L'enregistrement est arrêté ; ce qui a été enregistré reste chiffré sur ce poste. Contactez le centre d'examen pour obtenir un nouveau lien.",
    stop_consent_missing: "Votre consentement n'a pas été enregistré par le serveur. L'enregistrement est arrêté ; relancez l'application pour donner votre consentement.",
    stop_attempt_closed: "Votre épreuve est terminée ou votre consentement a été retiré : aucun nouvel enregistrement n'est possible. Vous pouvez fermer cette fenêtre.",
    stop_recording_destroyed: "L'enregistrement de cette épreuve a déjà été supprimé par le serveur : rien de plus ne sera envoyé.",
    stop_redirected: "Le serveur a répondu par une redirection, que l'application refuse de suivre par sécurité. Vérifiez l'adresse du serveur ou contactez le centre d'examen.",
    stop_untrusted_certificate: "Le certificat du serveur n'est pas reconnu : la connexion n'est pas sûre et rien n'est envoyé. Contactez le centre d'examen.",
    stop_too_many_streams: "Trop de sessions d'enregistrement ont été ouvertes pour cette épreuve. L'enregistrement est arrêté ; contactez le centre d'examen.",
};

pub fn current() -> &'static Messages {
    &FR
}
