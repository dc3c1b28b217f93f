"""Every string the frontends show, in French (the course's language, the default) and English.

``Translator(lang)("key", **params)`` formats one string; a key missing from a language is a
bug the tests catch (both languages must have the same keys and the same placeholders). The
translator also formats numbers the way each language writes them: ``87,3 %`` and ``1,2 s`` in
French, ``87.3%`` and ``1.2 s`` in English.

ImageNet category names (``espresso``, ``tabby``...) come from the model and stay in English.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

LANGS = ("fr", "en")
DEFAULT_LANG = "fr"

NBSP = "\u00a0"  # before ":" "%" and units in French
NNBSP = "\u202f"  # French thousands separator

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "page_title": "Classificateur d'images",
        "title": ":material/image_search: Classificateur d'images",
        "subtitle": (
            "Donnez une image : le modèle dit ce qu'il y voit, parmi les 1{nnbsp}000 "
            "catégories d'ImageNet."
        ),
        "tab_url": ":material/link: Adresse d'une image",
        "tab_upload": ":material/upload_file: Fichier",
        "url_label": "URL de l'image",
        "url_placeholder": "https://exemple.org/photo-de-chat.jpg",
        "url_help": "Une adresse http:// ou https:// qui mène directement à une image.",
        "classify": "Classer l'image",
        "upload_label": "Déposez une image ou choisissez-la (PNG, JPEG, GIF, BMP, WebP, TIFF)",
        "start_hint": (
            "Collez l'adresse d'une image puis « Classer l'image », ou déposez un fichier : "
            "la réponse s'affiche ici."
        ),
        "settings": "Réglages",
        "model_label": "Modèle",
        "model_help": (
            "Votre choix ne vaut que pour vous : il accompagne chacune de vos requêtes et ne "
            "change rien pour les autres visiteurs."
        ),
        "model_fixed": "Modèle{nbsp}: **{model}**",
        "model_info": "{architecture} · entrée {size}{nbsp}px · {dataset}",
        "top_k_label": "Nombre de réponses affichées",
        "compare_label": "Comparer tous les modèles",
        "compare_help": "Classe aussi l'image avec chaque modèle et les montre côte à côte.",
        "service": "Service{nbsp}: `{url}`",
        "service_default": "Service{nbsp}: `{url}` ({var} non défini, valeur locale par défaut)",
        "version": "Frontend {version}",
        "retry": "Réessayer",
        "spinner": "Classement de l'image…",
        "spinner_compare": "Classement avec les {count} modèles…",
        "your_image": "Votre image",
        "image_caption_url": "Affichée par votre navigateur depuis {url}",
        "image_caption_upload": "{name} · {size}",
        "image_unavailable": "Aperçu indisponible pour ce fichier.",
        "sentence_sure": "**{model}** y voit{nbsp}: **{label}** ({pct} de confiance).",
        "sentence_unsure": (
            "**{model}** hésite ; sa meilleure réponse{nbsp}: **{label}** ({pct} de confiance)."
        ),
        "chart_title": "Les {k} réponses les plus probables",
        "axis_probability": "Probabilité",
        "axis_label": "Catégorie",
        "timing": ":material/timer: Réponse en **{roundtrip}**",
        "timing_parts": "dont inférence {inference}, préparation de l'image {preprocess}",
        "timing_fetch": "téléchargement de l'image {fetch}",
        "compare_title": "Tous les modèles sur cette image",
        "compare_agree": "Les {count} modèles sont d'accord{nbsp}: **{label}**.",
        "compare_disagree": "Les modèles ne sont pas d'accord{nbsp}: {summary}.",
        "compare_yours": "votre choix",
        "compare_short": "**{label}** · {pct}",
        "compare_timing": ":material/timer: {roundtrip}",
        "compare_skipped": "La comparaison attend une image que le service a pu classer.",
        # ---- errors ----
        "server_said": "Message du service{nbsp}: « {message} »",
        "err_url_empty": "Saisissez d'abord l'adresse (URL) d'une image.",
        "err_url_scheme": (
            "« {url} » n'est pas une adresse web{nbsp}: elle doit commencer par http:// ou "
            "https://."
        ),
        "err_url_invalid": "« {url} » n'est pas une adresse web valide.",
        "hint_url": "Exemple{nbsp}: https://exemple.org/photo.jpg (clic droit sur une image, "
        "« Copier l'adresse de l'image »).",
        "err_unreachable": "Le service de classification ne répond pas ({url}).",
        "hint_unreachable": (
            "Il est peut-être arrêté ou en train de démarrer. Réessayez dans quelques secondes ; "
            "s'il reste injoignable, vérifiez qu'il tourne et que {var} pointe vers lui."
        ),
        "err_timeout": "Le service n'a pas répondu dans les {seconds}{nbsp}s.",
        "hint_timeout": "Il est peut-être surchargé{nbsp}: réessayez dans un moment.",
        "err_bad_response": "Le service a donné une réponse inattendue (HTTP {status}).",
        "hint_bad_response": (
            "Vérifiez que {var} ({url}) désigne bien le service de classification."
        ),
        "err_bad_address": "Le service refuse cette adresse d'image.",
        "err_blocked": "Le service refuse de contacter cette adresse (réseau privé ou local).",
        "hint_blocked": "Utilisez une image accessible publiquement sur Internet.",
        "err_remote_status": "Le site qui héberge l'image a répondu par une erreur.",
        "err_fetch_timeout": "Le site qui héberge l'image a mis trop de temps à répondre.",
        "err_fetch_failed": "Impossible de récupérer une image à cette adresse.",
        "hint_check_url": "Ouvrez l'adresse dans votre navigateur pour vérifier qu'elle montre "
        "bien une image.",
        "err_not_image": "Ce fichier n'est pas une image lisible.",
        "hint_formats": "Formats acceptés{nbsp}: PNG, JPEG, GIF, BMP, WebP, TIFF.",
        "err_image_too_large": "L'image a trop de pixels pour être classée.",
        "err_too_large": "Le fichier est trop volumineux.",
        "hint_smaller": "Essayez une image plus petite (quelques mégaoctets suffisent).",
        "err_unknown_model": "Ce modèle n'existe pas sur le service.",
        "hint_pick_model": "Choisissez un autre modèle dans la liste.",
        "err_not_ready": "Le service démarre{nbsp}: les modèles sont en cours de chargement.",
        "err_overloaded": "Le service est momentanément surchargé.",
        "hint_retry_in": "Réessayez dans {seconds}{nbsp}s.",
        "err_client": "Le service n'a pas accepté la requête (HTTP {status}).",
        "err_server": "Le service a rencontré une erreur (HTTP {status}).",
        "hint_later": "Réessayez plus tard ; si cela persiste, prévenez la personne qui le gère.",
        "err_models": "Impossible d'obtenir la liste des modèles.",
        "err_unexpected": "Une erreur inattendue s'est produite dans cette page.",
        "hint_unexpected": "Rechargez la page. Si cela recommence, signalez-le (heure{nbsp}: "
        "{time}).",
        "config_bad_url": (
            "{var} vaut « {value} », qui n'est pas une adresse de service{nbsp}: attendu "
            "http(s)://hôte[:port][/chemin], par exemple https://backend-xyz.a.run.app."
        ),
        "config_bad_lang": (
            "UI_LANG vaut « {value} »{nbsp}: langues disponibles {choices} ; la page est en "
            "« {default} »."
        ),
    },
    "en": {
        "page_title": "Image classifier",
        "title": ":material/image_search: Image classifier",
        "subtitle": (
            "Give it an image: the model says what it sees, among the 1,000 ImageNet categories."
        ),
        "tab_url": ":material/link: Image URL",
        "tab_upload": ":material/upload_file: File",
        "url_label": "Image URL",
        "url_placeholder": "https://example.org/cat-photo.jpg",
        "url_help": "An http:// or https:// address that leads straight to an image.",
        "classify": "Classify image",
        "upload_label": "Drop an image or browse for one (PNG, JPEG, GIF, BMP, WebP, TIFF)",
        "start_hint": (
            "Paste an image address and press “Classify image”, or drop a file: the answer "
            "appears here."
        ),
        "settings": "Settings",
        "model_label": "Model",
        "model_help": (
            "Your choice is yours alone: it goes with each of your requests and changes "
            "nothing for other visitors."
        ),
        "model_fixed": "Model: **{model}**",
        "model_info": "{architecture} · {size}{nbsp}px input · {dataset}",
        "top_k_label": "Answers shown",
        "compare_label": "Compare all models",
        "compare_help": "Also classify the image with every model and show them side by side.",
        "service": "Service: `{url}`",
        "service_default": "Service: `{url}` ({var} not set, local default)",
        "version": "Frontend {version}",
        "retry": "Retry",
        "spinner": "Classifying the image…",
        "spinner_compare": "Classifying with the {count} models…",
        "your_image": "Your image",
        "image_caption_url": "Shown by your browser from {url}",
        "image_caption_upload": "{name} · {size}",
        "image_unavailable": "No preview for this file.",
        "sentence_sure": "**{model}** sees **{label}** here ({pct} confident).",
        "sentence_unsure": "**{model}** is unsure; its best guess: **{label}** ({pct} confident).",
        "chart_title": "The {k} most likely answers",
        "axis_probability": "Probability",
        "axis_label": "Category",
        "timing": ":material/timer: Answered in **{roundtrip}**",
        "timing_parts": "of which inference {inference}, image preparation {preprocess}",
        "timing_fetch": "image download {fetch}",
        "compare_title": "Every model on this image",
        "compare_agree": "All {count} models agree: **{label}**.",
        "compare_disagree": "The models disagree: {summary}.",
        "compare_yours": "your choice",
        "compare_short": "**{label}** · {pct}",
        "compare_timing": ":material/timer: {roundtrip}",
        "compare_skipped": "The comparison waits for an image the service could classify.",
        # ---- errors ----
        "server_said": "The service said: “{message}”",
        "err_url_empty": "First enter the address (URL) of an image.",
        "err_url_scheme": "“{url}” is not a web address: it must start with http:// or https://.",
        "err_url_invalid": "“{url}” is not a valid web address.",
        "hint_url": "Example: https://example.org/photo.jpg (right-click an image, “Copy image "
        "address”).",
        "err_unreachable": "The classification service does not answer ({url}).",
        "hint_unreachable": (
            "It may be stopped or still starting. Try again in a few seconds; if it stays "
            "unreachable, check that it is running and that {var} points to it."
        ),
        "err_timeout": "The service did not answer within {seconds}{nbsp}s.",
        "hint_timeout": "It may be overloaded: try again in a moment.",
        "err_bad_response": "The service gave an unexpected answer (HTTP {status}).",
        "hint_bad_response": "Check that {var} ({url}) is the classification service.",
        "err_bad_address": "The service refuses this image address.",
        "err_blocked": "The service refuses to contact this address (private or local network).",
        "hint_blocked": "Use an image that is publicly reachable on the Internet.",
        "err_remote_status": "The site hosting the image answered with an error.",
        "err_fetch_timeout": "The site hosting the image took too long to answer.",
        "err_fetch_failed": "Could not get an image from this address.",
        "hint_check_url": "Open the address in your browser to check that it shows an image.",
        "err_not_image": "This file is not a readable image.",
        "hint_formats": "Accepted formats: PNG, JPEG, GIF, BMP, WebP, TIFF.",
        "err_image_too_large": "The image has too many pixels to classify.",
        "err_too_large": "The file is too large.",
        "hint_smaller": "Try a smaller image (a few megabytes is plenty).",
        "err_unknown_model": "This model does not exist on the service.",
        "hint_pick_model": "Pick another model from the list.",
        "err_not_ready": "The service is starting: its models are still loading.",
        "err_overloaded": "The service is overloaded right now.",
        "hint_retry_in": "Try again in {seconds}{nbsp}s.",
        "err_client": "The service did not accept the request (HTTP {status}).",
        "err_server": "The service ran into an error (HTTP {status}).",
        "hint_later": "Try again later; if it persists, tell whoever runs it.",
        "err_models": "Could not get the list of models.",
        "err_unexpected": "Something unexpected went wrong in this page.",
        "hint_unexpected": "Reload the page. If it happens again, report it (time: {time}).",
        "config_bad_url": (
            "{var} is “{value}”, which is not a service address: expected "
            "http(s)://host[:port][/path], for example https://backend-xyz.a.run.app."
        ),
        "config_bad_lang": (
            "UI_LANG is “{value}”: available languages are {choices}; the page is in “{default}”."
        ),
    },
}

# placeholders every string may use without passing them
_CONSTANTS = {"nbsp": NBSP, "nnbsp": NNBSP}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@dataclass(frozen=True)
class Translator:
    """Strings and number formats of one language."""

    lang: str = DEFAULT_LANG

    def __post_init__(self) -> None:
        if self.lang not in STRINGS:
            raise ValueError(f"unsupported language {self.lang!r}; expected one of {LANGS}")

    def __call__(self, key: str, **params: object) -> str:
        return STRINGS[self.lang][key].format(**_CONSTANTS, **params)

    # ---- numbers ------------------------------------------------------------------------
    def number(self, value: float, digits: int = 0) -> str:
        text = f"{value:,.{digits}f}"
        if self.lang == "fr":
            text = text.replace(",", NNBSP).replace(".", ",")
        return text

    def percent(self, probability: float, digits: int = 1) -> str:
        value = probability * 100
        smallest = 10**-digits
        if 0 < value < smallest:
            shown = f"< {self.number(smallest, digits)}"
        else:
            shown = self.number(value, digits)
        return f"{shown}{NBSP}%" if self.lang == "fr" else f"{shown}%"

    def duration(self, ms: float) -> str:
        if ms >= 1000:
            return f"{self.number(ms / 1000, 1)}{NBSP}s"
        if ms < 10:
            return f"{self.number(ms, 1)}{NBSP}ms"
        return f"{self.number(ms)}{NBSP}ms"

    def size(self, n_bytes: int) -> str:
        units = ("o", "Ko", "Mo", "Go") if self.lang == "fr" else ("B", "KB", "MB", "GB")
        value = float(n_bytes)
        for unit in units:
            if value < 1024 or unit == units[-1]:
                digits = 0 if unit == units[0] or value >= 100 else 1
                return f"{self.number(value, digits)}{NBSP}{unit}"
            value /= 1024
        raise AssertionError("unreachable")
