//! Word lists and reference tables the dataset generator draws from: cities,
//! property kinds, guest origins, channels, statuses and message templates.
//! Values are realistic but fictional (example domains, reserved phone ranges).

/// Where a listing is: address parts, coordinates, zone and currency.
pub(super) struct City {
    pub(super) city: &'static str,
    pub(super) state: &'static str,
    pub(super) country: &'static str,
    pub(super) country_code: &'static str,
    pub(super) zipcode: &'static str,
    pub(super) lat: f64,
    pub(super) lng: f64,
    pub(super) time_zone: &'static str,
    pub(super) currency: &'static str,
    pub(super) streets: &'static [&'static str],
}

pub(super) const CITIES: &[City] = &[
    City {
        city: "Cascais",
        state: "Lisboa",
        country: "Portugal",
        country_code: "PT",
        zipcode: "2750-310",
        lat: 38.6968,
        lng: -9.4215,
        time_zone: "Europe/Lisbon",
        currency: "EUR",
        streets: &[
            "Rua das Gaivotas",
            "Avenida Marginal",
            "Rua Frederico Arouca",
        ],
    },
    City {
        city: "Lisbon",
        state: "Lisboa",
        country: "Portugal",
        country_code: "PT",
        zipcode: "1200-095",
        lat: 38.7118,
        lng: -9.1418,
        time_zone: "Europe/Lisbon",
        currency: "EUR",
        streets: &["Travessa do Carmo", "Rua da Rosa", "Calcada do Combro"],
    },
    City {
        city: "Porto",
        state: "Porto",
        country: "Portugal",
        country_code: "PT",
        zipcode: "4050-253",
        lat: 41.1496,
        lng: -8.6110,
        time_zone: "Europe/Lisbon",
        currency: "EUR",
        streets: &["Rua das Flores", "Rua de Cedofeita", "Rua do Almada"],
    },
    City {
        city: "Barcelona",
        state: "Catalonia",
        country: "Spain",
        country_code: "ES",
        zipcode: "08002",
        lat: 41.3874,
        lng: 2.1686,
        time_zone: "Europe/Madrid",
        currency: "EUR",
        streets: &["Carrer de Verdi", "Carrer del Rec", "Passeig de Gracia"],
    },
    City {
        city: "Nice",
        state: "Provence-Alpes-Cote d'Azur",
        country: "France",
        country_code: "FR",
        zipcode: "06000",
        lat: 43.7102,
        lng: 7.2620,
        time_zone: "Europe/Paris",
        currency: "EUR",
        streets: &["Rue de France", "Boulevard Gambetta", "Rue Droite"],
    },
    City {
        city: "Florence",
        state: "Tuscany",
        country: "Italy",
        country_code: "IT",
        zipcode: "50122",
        lat: 43.7696,
        lng: 11.2558,
        time_zone: "Europe/Rome",
        currency: "EUR",
        streets: &["Via dei Neri", "Borgo San Frediano", "Via Ghibellina"],
    },
    City {
        city: "Edinburgh",
        state: "Scotland",
        country: "United Kingdom",
        country_code: "GB",
        zipcode: "EH1 1YZ",
        lat: 55.9533,
        lng: -3.1883,
        time_zone: "Europe/London",
        currency: "GBP",
        streets: &["Cockburn Street", "Victoria Street", "Broughton Street"],
    },
    City {
        city: "Austin",
        state: "Texas",
        country: "United States",
        country_code: "US",
        zipcode: "78701",
        lat: 30.2672,
        lng: -97.7431,
        time_zone: "America/Chicago",
        currency: "USD",
        streets: &["Rainey Street", "East 6th Street", "South Congress Avenue"],
    },
    City {
        city: "Miami Beach",
        state: "Florida",
        country: "United States",
        country_code: "US",
        zipcode: "33139",
        lat: 25.7907,
        lng: -80.1300,
        time_zone: "America/New_York",
        currency: "USD",
        streets: &["Collins Avenue", "Ocean Drive", "Meridian Avenue"],
    },
    City {
        city: "South Lake Tahoe",
        state: "California",
        country: "United States",
        country_code: "US",
        zipcode: "96150",
        lat: 38.9399,
        lng: -119.9772,
        time_zone: "America/Los_Angeles",
        currency: "USD",
        streets: &["Ski Run Boulevard", "Pioneer Trail", "Emerald Bay Road"],
    },
];

/// A property type with its typical size and nightly price.
pub(super) struct Kind {
    pub(super) word: &'static str,
    pub(super) property_type_id: i64,
    pub(super) bedrooms: i64,
    pub(super) capacity: i64,
    pub(super) price: f64,
    pub(super) cleaning_fee: f64,
}

pub(super) const KINDS: &[Kind] = &[
    Kind {
        word: "Studio",
        property_type_id: 1,
        bedrooms: 0,
        capacity: 2,
        price: 85.0,
        cleaning_fee: 30.0,
    },
    Kind {
        word: "Loft",
        property_type_id: 1,
        bedrooms: 1,
        capacity: 3,
        price: 140.0,
        cleaning_fee: 45.0,
    },
    Kind {
        word: "Apartment",
        property_type_id: 1,
        bedrooms: 2,
        capacity: 4,
        price: 165.0,
        cleaning_fee: 60.0,
    },
    Kind {
        word: "Townhouse",
        property_type_id: 2,
        bedrooms: 3,
        capacity: 6,
        price: 260.0,
        cleaning_fee: 90.0,
    },
    Kind {
        word: "Cottage",
        property_type_id: 2,
        bedrooms: 2,
        capacity: 4,
        price: 190.0,
        cleaning_fee: 70.0,
    },
    Kind {
        word: "Cabin",
        property_type_id: 2,
        bedrooms: 3,
        capacity: 6,
        price: 230.0,
        cleaning_fee: 80.0,
    },
    Kind {
        word: "Villa",
        property_type_id: 2,
        bedrooms: 4,
        capacity: 8,
        price: 420.0,
        cleaning_fee: 150.0,
    },
];

pub(super) const ADJECTIVES: &[&str] = &[
    "Harbour",
    "Sunny",
    "Old Town",
    "Garden",
    "Seaview",
    "Riverside",
    "Hilltop",
    "Quiet",
    "Bright",
    "Cozy",
    "Historic",
    "Olive Grove",
    "Courtyard",
    "Skyline",
];

pub(super) const FEATURES: &[&str] = &[
    "with Balcony",
    "with Pool",
    "with Terrace",
    "near the Beach",
    "by the Park",
    "with Hot Tub",
    "with Garden",
    "with Parking",
    "in the Centre",
    "with Sea View",
    "with Fireplace",
    "with Rooftop Deck",
];

pub(super) const PITCHES: &[&str] = &[
    "a short walk from the old town",
    "close to restaurants and shops",
    "with fast Wi-Fi and a dedicated workspace",
    "ideal for families",
    "perfect for a long weekend",
    "with self check-in",
];

/// Where a guest comes from: names, city, locale and phone numbering.
pub(super) struct Origin {
    pub(super) country_code: &'static str,
    pub(super) locale: &'static str,
    pub(super) phone_prefix: &'static str,
    pub(super) phone_digits: usize,
    pub(super) cities: &'static [&'static str],
    pub(super) first_names: &'static [&'static str],
    pub(super) last_names: &'static [&'static str],
}

pub(super) const ORIGINS: &[Origin] = &[
    Origin {
        country_code: "PT",
        locale: "pt",
        phone_prefix: "+35191",
        phone_digits: 7,
        cities: &["Porto", "Braga", "Coimbra"],
        first_names: &["Marta", "Joao", "Ines", "Tiago", "Beatriz", "Rui"],
        last_names: &[
            "Silva", "Ferreira", "Costa", "Santos", "Oliveira", "Pereira",
        ],
    },
    Origin {
        country_code: "DE",
        locale: "de",
        phone_prefix: "+49151",
        phone_digits: 8,
        cities: &["Hamburg", "Munich", "Cologne"],
        first_names: &["Lukas", "Anna", "Jonas", "Lea", "Felix", "Mia"],
        last_names: &[
            "Becker", "Schmidt", "Weber", "Fischer", "Wagner", "Hoffmann",
        ],
    },
    Origin {
        country_code: "GB",
        locale: "en",
        phone_prefix: "+447700900",
        phone_digits: 3,
        cities: &["Leeds", "Manchester", "Bristol"],
        first_names: &["Tom", "Emily", "Oliver", "Sophie", "Harry", "Grace"],
        last_names: &["Whitaker", "Taylor", "Brown", "Evans", "Walker", "Hughes"],
    },
    Origin {
        country_code: "US",
        locale: "en",
        phone_prefix: "+1312555",
        phone_digits: 4,
        cities: &["Chicago", "Denver", "Seattle"],
        first_names: &["Ethan", "Olivia", "Mason", "Ava", "Noah", "Chloe"],
        last_names: &["Johnson", "Miller", "Davis", "Garcia", "Anderson", "Clark"],
    },
    Origin {
        country_code: "FR",
        locale: "fr",
        phone_prefix: "+336",
        phone_digits: 8,
        cities: &["Lyon", "Bordeaux", "Lille"],
        first_names: &["Camille", "Lucas", "Manon", "Hugo", "Louise", "Louis"],
        last_names: &["Martin", "Bernard", "Dubois", "Laurent", "Moreau", "Girard"],
    },
    Origin {
        country_code: "ES",
        locale: "es",
        phone_prefix: "+346",
        phone_digits: 8,
        cities: &["Madrid", "Seville", "Bilbao"],
        first_names: &["Lucia", "Pablo", "Carmen", "Javier", "Sofia", "Diego"],
        last_names: &[
            "Garcia",
            "Fernandez",
            "Lopez",
            "Martinez",
            "Sanchez",
            "Romero",
        ],
    },
    Origin {
        country_code: "IT",
        locale: "it",
        phone_prefix: "+393",
        phone_digits: 9,
        cities: &["Milan", "Turin", "Bologna"],
        first_names: &["Giulia", "Marco", "Chiara", "Luca", "Francesca", "Matteo"],
        last_names: &["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano"],
    },
    Origin {
        country_code: "NL",
        locale: "nl",
        phone_prefix: "+316",
        phone_digits: 8,
        cities: &["Utrecht", "Rotterdam", "Eindhoven"],
        first_names: &["Daan", "Emma", "Sem", "Julia", "Lars", "Sanne"],
        last_names: &["de Jong", "Jansen", "de Vries", "Bakker", "Visser", "Smit"],
    },
];

/// (channelId, channelName, source, weight)
pub(super) const CHANNELS: &[(i64, &str, &str, u32)] = &[
    (2018, "airbnbOfficial", "airbnbOfficial", 45),
    (2005, "bookingcom", "bookingcom", 25),
    (2002, "homeaway", "homeaway", 10),
    (2000, "direct", "reservation", 8),
    (2013, "bookingengine", "bookingengine", 7),
    (2007, "expedia", "expedia", 5),
];

/// Inquiries are an Airbnb concept; owner stays are direct.
pub(super) const AIRBNB: (i64, &str, &str, u32) = CHANNELS[0];
pub(super) const DIRECT: (i64, &str, &str, u32) = CHANNELS[3];

/// Statuses of generated reservations: mostly bookings, some cancellations,
/// owner blocks and inquiries.
pub(super) const STATUSES: &[(&str, u32)] = &[
    ("new", 48),
    ("modified", 26),
    ("cancelled", 13),
    ("inquiry", 7),
    ("ownerStay", 6),
];

pub(super) const CANCELLATION_POLICIES: &[(i64, &str)] =
    &[(4200, "flexible"), (4201, "moderate"), (4207, "strict")];

pub(super) const GUEST_NOTES: &[&str] = &[
    "Arriving by train around 6pm.",
    "Travelling with a toddler.",
    "Celebrating our anniversary.",
    "We will need two parking spaces.",
    "Late arrival, around 11pm.",
];

pub(super) const HOST_NOTES: &[&str] = &[
    "Asked for baby cot.",
    "Returning guest, leave a welcome bottle.",
    "Requested early check-in.",
    "Pays the balance on arrival.",
    "Allergic to feather pillows.",
];

/// Placeholders: `{listing}` (listing name), `{hour}` (a morning hour).
pub(super) const GUEST_MESSAGES: &[&str] = &[
    "Hi! We just booked {listing}. Looking forward to our stay.",
    "Hello, what time is check-in? We land around {hour}:00.",
    "Thanks! Is there parking near the building?",
    "Could we check in a bit earlier, around {hour}:00?",
    "Do you have a baby cot we could use?",
    "What is the Wi-Fi password?",
    "Is it possible to leave our luggage after check-out?",
    "Thanks, everything is perfect!",
    "We are running about an hour late, sorry!",
    "Can you recommend a good restaurant nearby?",
    "Are pets allowed? We travel with a small dog.",
    "The heating does not seem to work, could you help?",
];

/// Placeholders: `{first}` (guest first name), `{listing}`, `{checkin}` (hour).
pub(super) const HOST_MESSAGES: &[&str] = &[
    "Hi {first}, thank you for booking {listing}! Check-in is from {checkin}:00.",
    "Hi {first}, there is a public car park two minutes from the entrance.",
    "Early check-in should be fine, I will confirm on the day.",
    "Of course, a baby cot will be ready for you.",
    "The Wi-Fi details are on the card next to the router.",
    "You can leave your bags in the hallway until 15:00.",
    "Thank you for staying with us, safe travels!",
    "No problem at all, the self check-in code works any time.",
    "Try the seafood place at the end of the street, it is excellent.",
    "We have sent a technician, he will be there within the hour.",
];
