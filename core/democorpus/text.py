"""Customer-service sentences for the embedded default corpus, written for this project.

English and Spanish: what callers and agents say on a support line, plus the automated (IVR)
announcements a call passes through. Templates have slots ({name}, {number}, ...) that
`sentence(rng, language)` fills, so every pseudo-speaker says something a little different.
"""

from __future__ import annotations

import numpy as np

EN_SENTENCES = (
    "Hi, I'm calling about my last bill, it looks higher than usual.",
    "Thank you for calling, my name is {name}, how can I help you today?",
    "I ordered a {product} two weeks ago and it still hasn't arrived.",
    "Could you give me your account number, please?",
    "My account number is {number}.",
    "Sure, it's {number}, and the postcode is {postcode}.",
    "I've been trying to log in since this morning but the password reset doesn't work.",
    "Let me check that for you, it will only take a moment.",
    "I was charged twice for the same order, on the {day} and again yesterday.",
    "Can you tell me when the technician is supposed to come?",
    "The internet keeps dropping every evening around eight o'clock.",
    "I'd like to cancel my subscription, please.",
    "Before we do that, can I ask why you want to cancel?",
    "I moved house last month and I need to update my address.",
    "The new address is {number} {street} Street.",
    "I can see the payment here, it went through on {day}.",
    "Is there any way to get a refund for the {product}?",
    "I'm sorry about that, I understand how frustrating it must be.",
    "Could you spell your last name for me?",
    "Yes, it's {name}, like it sounds.",
    "I've already called three times about this and nobody called me back.",
    "I'll open a ticket and escalate it to our technical team.",
    "You should receive a confirmation email within the next hour.",
    "Can I speak to a supervisor, please?",
    "The app says my card was declined, but the bank says everything is fine.",
    "Would you like me to send you a replacement {product}?",
    "I'm calling on behalf of my mother, the account is in her name.",
    "For security reasons I need to confirm your date of birth.",
    "It's the {day} of March, nineteen eighty four.",
    "Your contract renews automatically at the end of {month}.",
    "I didn't receive the code on my phone, can you send it again?",
    "The delivery driver left the package at the wrong door.",
    "We can offer you a discount of {percent} percent for the next three months.",
    "That sounds good, please go ahead with that.",
    "Please hold for a moment while I transfer you to the right department.",
    "I need to change the date of my appointment to next {weekday}.",
    "The screen went black after the last update and it won't turn on.",
    "Have you tried restarting the router and waiting two minutes?",
    "Yes, I've done that twice already and nothing changed.",
    "Your order number is {number}, please keep it for your records.",
    "Is there anything else I can help you with today?",
    "No, that's everything, thank you very much for your help.",
    "I'm not happy with the service, this is the second time it happens.",
    "The invoice shows a late fee, but I paid on time.",
    "I would like to add my partner as a second user on the account.",
    "We have an outage in your area, engineers are working on it.",
    "How long will it take for the money to be back in my account?",
    "Usually between three and five working days.",
    "I just want to know why my plan changed without anyone telling me.",
    "Let me read you the terms of the new plan.",
    "My {product} stopped charging after only a month.",
    "Can you confirm the email address we have on file?",
    "It's {name} at example dot com.",
    "I'm calling from work, so I only have a few minutes.",
    "I'll call you back on this number if we get disconnected.",
    "The tracking page hasn't changed since {weekday}.",
    "I can arrange a collection for {weekday} morning between nine and twelve.",
    "Do I need to be at home for the installation?",
    "Sorry, could you repeat that, the line is very bad.",
    "Thanks for your patience, I have good news for you.",
)

ES_SENTENCES = (
    "Hola, llamo por mi última factura, es más alta de lo normal.",
    "Gracias por llamar, mi nombre es {name}, ¿en qué puedo ayudarle hoy?",
    "Pedí un {product} hace dos semanas y todavía no ha llegado.",
    "¿Me puede dar su número de cuenta, por favor?",
    "Mi número de cuenta es {number}.",
    "Claro, es {number}, y el código postal es {postcode}.",
    "Llevo toda la mañana intentando entrar pero no puedo cambiar la contraseña.",
    "Permítame revisarlo, solo tardo un momento.",
    "Me cobraron dos veces el mismo pedido, el día {day} y otra vez ayer.",
    "¿Me puede decir cuándo viene el técnico?",
    "El internet se corta todas las noches a eso de las ocho.",
    "Quiero cancelar mi suscripción, por favor.",
    "Antes de hacerlo, ¿me puede decir por qué quiere cancelar?",
    "Me mudé el mes pasado y necesito cambiar mi dirección.",
    "La nueva dirección es calle {street}, número {number}.",
    "Aquí veo el pago, se hizo el {weekday}.",
    "¿Hay alguna forma de que me devuelvan el dinero del {product}?",
    "Lo siento mucho, entiendo que es muy molesto.",
    "¿Me puede deletrear su apellido?",
    "Sí, es {name}, tal como suena.",
    "Ya he llamado tres veces por esto y nadie me ha devuelto la llamada.",
    "Voy a abrir una incidencia y la paso a nuestro equipo técnico.",
    "Recibirá un correo de confirmación en la próxima hora.",
    "¿Puedo hablar con un supervisor, por favor?",
    "La aplicación dice que rechazaron mi tarjeta, pero el banco dice que todo está bien.",
    "¿Quiere que le enviemos un {product} nuevo?",
    "Llamo de parte de mi madre, la cuenta está a su nombre.",
    "Por seguridad necesito confirmar su fecha de nacimiento.",
    "Es el {day} de marzo de mil novecientos ochenta y cuatro.",
    "Su contrato se renueva automáticamente a finales de {month}.",
    "No me llegó el código al teléfono, ¿me lo puede enviar otra vez?",
    "El repartidor dejó el paquete en la puerta equivocada.",
    "Le podemos ofrecer un descuento del {percent} por ciento durante tres meses.",
    "Me parece bien, adelante con eso.",
    "Por favor, espere un momento mientras le paso con el departamento correcto.",
    "Necesito cambiar la fecha de mi cita para el próximo {weekday}.",
    "La pantalla se quedó negra después de la última actualización y no enciende.",
    "¿Ha probado a reiniciar el router y esperar dos minutos?",
    "Sí, ya lo hice dos veces y no cambió nada.",
    "Su número de pedido es {number}, guárdelo por favor.",
    "¿Hay algo más en lo que le pueda ayudar hoy?",
    "No, eso es todo, muchas gracias por su ayuda.",
    "No estoy contento con el servicio, es la segunda vez que pasa.",
    "En la factura aparece un recargo por retraso, pero yo pagué a tiempo.",
    "Quisiera añadir a mi pareja como segundo usuario de la cuenta.",
    "Tenemos una avería en su zona, los técnicos ya están trabajando.",
    "¿Cuánto tardará en volver el dinero a mi cuenta?",
    "Normalmente entre tres y cinco días hábiles.",
    "Solo quiero saber por qué cambiaron mi plan sin avisarme.",
    "Le leo las condiciones del nuevo plan.",
    "Mi {product} dejó de cargar después de solo un mes.",
    "¿Me confirma el correo electrónico que tenemos registrado?",
    "Es {name} arroba ejemplo punto com.",
    "Le llamo desde el trabajo, así que tengo pocos minutos.",
    "Si se corta la llamada le vuelvo a llamar a este número.",
    "La página de seguimiento no ha cambiado desde el {weekday}.",
    "Puedo programar la recogida para el {weekday} por la mañana, entre las nueve y las doce.",
    "¿Tengo que estar en casa para la instalación?",
    "Perdone, ¿me lo puede repetir?, se oye muy mal.",
    "Gracias por esperar, tengo buenas noticias para usted.",
)

# slot -> language -> fillers (slot-major, so each slot's two languages sit side by side)
_FILLERS = {
    "name": {
        "en": ("Sarah", "Michael", "Priya", "James", "Olivia", "David", "Grace", "Tom", "Linda", "Kevin"),
        "es": ("Lucía", "Javier", "Carmen", "Diego", "Sofía", "Andrés", "Marta", "Pablo", "Elena", "Raúl"),
    },
    "product": {
        "en": ("phone", "router", "laptop", "washing machine", "tablet", "headset", "printer"),
        "es": ("teléfono", "router", "portátil", "lavavajillas", "televisor", "auricular", "microondas"),
    },
    "street": {
        "en": ("Oak", "Mill", "Church", "Station", "Park", "Victoria", "Maple"),
        "es": ("Mayor", "del Sol", "Alcalá", "de la Paz", "Real", "San Martín", "Colón"),
    },
    "month": {
        "en": ("January", "April", "June", "September", "November"),
        "es": ("enero", "abril", "junio", "septiembre", "noviembre"),
    },
    "weekday": {
        "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"),
        "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado"),
    },
}
SLOTS = {lang: {slot: by_lang[lang] for slot, by_lang in _FILLERS.items()} for lang in ("en", "es")}

EN_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ES_DIGITS = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve")

IVR_ANNOUNCEMENTS = {
    "en": (
        "Thank you for calling. Your call is important to us. Please stay on the line.",
        "All of our agents are currently busy. Your call will be answered shortly.",
        "This call may be recorded for quality and training purposes.",
        "For billing, press one. For technical support, press two. For anything else, press three.",
        "You can also find answers to common questions on our website.",
        "Your estimated waiting time is less than five minutes.",
    ),
    "es": (
        "Gracias por llamar. Su llamada es muy importante para nosotros. Por favor, no cuelgue.",
        "Todos nuestros agentes están ocupados. Le atenderemos en breve.",
        "Esta llamada puede ser grabada para mejorar la calidad del servicio.",
        "Para facturación, pulse uno. Para soporte técnico, pulse dos. Para otras consultas, pulse tres.",
        "También puede encontrar respuestas a las preguntas frecuentes en nuestra página web.",
        "El tiempo de espera estimado es de menos de cinco minutos.",
    ),
}

SENTENCES = {"en": EN_SENTENCES, "es": ES_SENTENCES}


def _digits(rng: np.random.Generator, language: str, n: int) -> str:
    words = EN_DIGITS if language == "en" else ES_DIGITS
    return " ".join(words[int(d)] for d in rng.integers(0, 10, n))


def fill(template: str, rng: np.random.Generator, language: str) -> str:
    """Fill a template's slots with values drawn from `rng`."""
    slots = SLOTS[language]
    values = {key: str(rng.choice(options)) for key, options in slots.items()}
    values["number"] = _digits(rng, language, int(rng.integers(4, 8)))
    values["postcode"] = _digits(rng, language, 5)
    values["day"] = str(int(rng.integers(1, 29)))
    values["percent"] = str(int(rng.choice([10, 15, 20, 25, 30])))
    return template.format(**values)


def sentence(rng: np.random.Generator, language: str) -> str:
    """One customer-service sentence in `language` ('en' or 'es'), slots filled."""
    pool = SENTENCES[language]
    return fill(pool[int(rng.integers(len(pool)))], rng, language)


def announcement(rng: np.random.Generator, language: str) -> str:
    pool = IVR_ANNOUNCEMENTS[language]
    return pool[int(rng.integers(len(pool)))]
