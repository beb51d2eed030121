"""The generator's parameters: DC geometry, the fare model, the other columns' shares and
the observed defect rates (values and sources: docs/generator.md)."""

from __future__ import annotations

import numpy as np

from components.common import contract

GENERATOR_VERSION = 1
TRUTH_FILE = "truth.json"
CHUNK_ROWS = 100_000  # lines per chunk: bounds memory
ZIP_COMPRESSLEVEL = 1  # deflate level for --zip (speed over size; any level reads the same)

# --- geometry ------------------------------------------------------------------------

KM_PER_MILE = 1.609344
KM_PER_DEG_LAT = 111.195  # features.EARTH_RADIUS_KM * pi / 180
# Block grid: ~245 m x ~251 m cells anchored at the south-west corner of the extent.
# Steps are whole multiples of 0.0001 so every grid point is exact with 4 decimals.
GRID_LAT_STEP = 0.0022
GRID_LON_STEP = 0.0029
GRID_LAT0, GRID_LAT_MAX = contract.DC_LAT_RANGE
GRID_LON0, GRID_LON_MAX = contract.DC_LON_RANGE
GRID_NLAT = int(round((GRID_LAT_MAX - GRID_LAT0) / GRID_LAT_STEP, 6)) + 1
GRID_NLON = int(round((GRID_LON_MAX - GRID_LON0) / GRID_LON_STEP, 6)) + 1
_MID_LAT = (GRID_LAT0 + GRID_LAT_MAX) / 2
KM_PER_DEG_LON = KM_PER_DEG_LAT * float(np.cos(np.radians(_MID_LAT)))

CAPITOL = (38.8899, -77.0091)  # origin of DC street numbering (quadrants NW/NE/SW/SE)
DCA = (38.8512, -77.0402)  # Reagan National airport
AIRPORT_RADIUS_KM = 0.6  # AIRPORT = "Y" when either end is this close to DCA
AIRPORT_BLOCKNAME = "RONALD REAGAN WASHINGTON NATIONAL AIRPORT"

# Where trips start and end: (name, lat, lon, sigma_km, origin weight, destination weight).
HOTSPOTS: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("Farragut / K Street", 38.9020, -77.0390, 0.7, 0.16, 0.14),
    ("Dupont Circle", 38.9096, -77.0434, 0.6, 0.10, 0.09),
    ("Georgetown", 38.9055, -77.0630, 0.6, 0.08, 0.08),
    ("Union Station", 38.8973, -77.0063, 0.4, 0.08, 0.08),
    ("Capitol Hill", 38.8867, -76.9995, 0.7, 0.07, 0.07),
    ("Penn Quarter", 38.8990, -77.0219, 0.5, 0.10, 0.10),
    ("U Street", 38.9170, -77.0290, 0.6, 0.07, 0.07),
    ("Adams Morgan", 38.9215, -77.0422, 0.5, 0.05, 0.05),
    ("Foggy Bottom", 38.9000, -77.0500, 0.5, 0.06, 0.06),
    ("Navy Yard", 38.8765, -77.0053, 0.5, 0.04, 0.04),
    ("The Wharf", 38.8790, -77.0230, 0.4, 0.03, 0.03),
    ("Columbia Heights", 38.9282, -77.0326, 0.6, 0.04, 0.04),
    ("Reagan National (DCA)", DCA[0], DCA[1], 0.15, 0.03, 0.04),
    ("Cleveland Park", 38.9345, -77.0580, 0.8, 0.03, 0.04),
)
ORIGIN_BACKGROUND = 0.04  # share of origins uniform over the extent
DEST_HOTSPOT = 0.20  # share of destinations drawn from the hotspots
DEST_BACKGROUND = 0.02  # share of destinations uniform over the extent
DISPLACEMENT_MEDIAN_KM = 1.95  # otherwise: origin + lognormal displacement, uniform direction
DISPLACEMENT_SIGMA = 0.42

# --- the fare model ----------------------------------------------------------------------

DETOUR_MEAN = 1.30  # street distance / straight line, E[D]
DETOUR_SIGMA = 0.15  # D = DETOUR_MEAN * lognormal(-s^2/2, s)
EXTRA_MILES_MEAN = 0.25  # exponential extra street miles (to the door, one-way streets)
FREE_FLOW_MPH = 22.0
WAIT_K = 0.27  # waiting hours = moving hours * WAIT_K * (FREE_FLOW_MPH/speed - 1) * G
WAIT_GAMMA_SHAPE = 1.5  # G ~ Gamma(shape, 1/shape): mean 1
WAIT_RATE_RANGE = (25.0, 35.0)  # $ per waiting hour, uniform per trip
METER_NOISE_SIGMA = 0.12  # M = lognormal(-s^2/2, s) multiplies the metered part
# Hourly traffic speed (mph) for Monday-Thursday and for Saturday/Sunday. Friday is the
# weekday profile FRIDAY_EVENING_FACTOR slower from 15:00 on.
WEEKDAY_SPEED = (
    *(19.0, 20.0, 21.0, 21.0, 20.0, 17.0, 13.0, 9.5, 8.5, 10.0, 11.5, 11.5),
    *(11.0, 11.0, 11.0, 10.5, 9.0, 8.5, 9.5, 11.0, 13.0, 14.5, 16.0, 17.5),
)
WEEKEND_SPEED = (
    *(16.0, 17.0, 18.0, 19.0, 20.0, 20.0, 19.0, 17.0, 16.0, 14.5, 13.0, 12.0),
    *(11.5, 11.5, 11.5, 11.5, 12.0, 12.0, 12.0, 12.5, 13.0, 13.0, 13.5, 14.5),
)
FRIDAY_EVENING_FACTOR = 0.92

# Demand: when trips start (relative weights per weekday and per hour).
WEEKDAY_DEMAND = (0.90, 0.95, 1.00, 1.05, 1.15, 1.15, 0.90)  # Monday..Sunday
WEEKDAY_HOURLY_DEMAND = (
    *(0.35, 0.25, 0.18, 0.10, 0.08, 0.12, 0.30, 0.60, 0.85, 0.80, 0.70, 0.75),
    *(0.85, 0.85, 0.85, 0.90, 0.95, 1.00, 1.00, 0.95, 0.90, 0.85, 0.80, 0.60),
)
WEEKEND_HOURLY_DEMAND = (
    *(0.90, 0.85, 0.75, 0.40, 0.15, 0.10, 0.12, 0.20, 0.30, 0.45, 0.60, 0.70),
    *(0.80, 0.85, 0.85, 0.85, 0.85, 0.85, 0.90, 0.95, 0.95, 1.00, 1.00, 0.95),
)

# --- the other columns -------------------------------------------------------------------

TRIPTYPES = ((1, 0.80), (2, 0.20))  # 1 street hail, 2 dispatched
DISPATCH_FEE = 2.00  # EXTRAFAREAMOUNT for dispatched trips
PROVIDERS = (
    ("Transco", 0.22),
    ("Yellow Cab", 0.18),
    ("DC VIP Cab", 0.12),
    ("Grand Cab", 0.10),
    ("Capitol Cab", 0.10),
    ("Sun Cab", 0.08),
    ("Elite Cab", 0.08),
    ("Hybrid Cab", 0.07),
    ("Checker Cab", 0.05),
)
PAYMENTTYPES = (
    (1, 0.45),
    (2, 0.50),
    (3, 0.01),
    (4, 0.005),
    (5, 0.035),
)  # cash, card, no charge, dispute, unknown
CARD_PAYMENT = 2
TIP_SHARES = ((0.0, 0.15), (0.15, 0.30), (0.18, 0.20), (0.20, 0.25), (0.25, 0.10))  # card tips, share of fare
SURCHARGE = 0.25  # DC passenger surcharge on every trip
EXTRA_PASSENGERS = ((0, 0.82), (1, 0.12), (2, 0.05), (3, 0.01))  # $1.00 each
TOLL_RATE = 0.003
TOLL_AMOUNTS = (1.00, 2.00, 3.50)

# --- defects (observed rates, DESIGN.md) ---------------------------------------------------

DEFECT_RATES = {
    "origin_timestamp_missing": 0.21,
    "destination_timestamp_missing_given_origin_missing": 0.90,
    "destination_timestamp_missing_otherwise": 0.005,
    "origin_coords_missing": 0.140,
    "destination_coords_missing": 0.194,
    "either_coords_missing": 0.246,
    "fare_null": 0.005,
    "fare_below_min": 0.0049,
    "fare_below_min_negative_share": 0.30,
    "fare_below_min_large_negative_share": 0.05,
    "fare_absurd": 0.0002,
    "mileage_null": 0.002,
    "duration_null": 0.002,
    "duplicates": 0.002,
}
FARE_MIN_OBSERVED = -2064.71
FARE_MAX_OBSERVED = 745557.28

# Zip codes: (zip, city, state, centroid lat, centroid lon); a block takes the nearest
# centroid of its state.
ZIPS: tuple[tuple[str, str, str, float, float], ...] = (
    ("20001", "WASHINGTON", "DC", 38.9108, -77.0177),
    ("20002", "WASHINGTON", "DC", 38.9050, -76.9830),
    ("20003", "WASHINGTON", "DC", 38.8820, -76.9950),
    ("20004", "WASHINGTON", "DC", 38.8950, -77.0260),
    ("20005", "WASHINGTON", "DC", 38.9040, -77.0310),
    ("20006", "WASHINGTON", "DC", 38.8980, -77.0410),
    ("20007", "WASHINGTON", "DC", 38.9140, -77.0790),
    ("20008", "WASHINGTON", "DC", 38.9360, -77.0600),
    ("20009", "WASHINGTON", "DC", 38.9190, -77.0380),
    ("20010", "WASHINGTON", "DC", 38.9330, -77.0300),
    ("20011", "WASHINGTON", "DC", 38.9520, -77.0240),
    ("20012", "WASHINGTON", "DC", 38.9770, -77.0300),
    ("20015", "WASHINGTON", "DC", 38.9660, -77.0580),
    ("20016", "WASHINGTON", "DC", 38.9380, -77.0900),
    ("20017", "WASHINGTON", "DC", 38.9370, -76.9920),
    ("20018", "WASHINGTON", "DC", 38.9260, -76.9740),
    ("20019", "WASHINGTON", "DC", 38.8900, -76.9380),
    ("20020", "WASHINGTON", "DC", 38.8600, -76.9800),
    ("20024", "WASHINGTON", "DC", 38.8760, -77.0190),
    ("20032", "WASHINGTON", "DC", 38.8340, -77.0080),
    ("20036", "WASHINGTON", "DC", 38.9080, -77.0420),
    ("20037", "WASHINGTON", "DC", 38.8990, -77.0520),
    ("22201", "ARLINGTON", "VA", 38.8870, -77.0950),
    ("22202", "ARLINGTON", "VA", 38.8560, -77.0520),
    ("22204", "ARLINGTON", "VA", 38.8600, -77.1000),
    ("22209", "ARLINGTON", "VA", 38.8950, -77.0710),
    ("22211", "ARLINGTON", "VA", 38.8800, -77.0700),
    ("22301", "ALEXANDRIA", "VA", 38.8200, -77.0600),
    ("20815", "CHEVY CHASE", "MD", 38.9780, -77.0800),
    ("20910", "SILVER SPRING", "MD", 38.9930, -77.0250),
    ("20912", "TAKOMA PARK", "MD", 38.9820, -76.9950),
    ("20782", "HYATTSVILLE", "MD", 38.9600, -76.9600),
    ("20743", "CAPITOL HEIGHTS", "MD", 38.8800, -76.9150),
    ("20745", "OXON HILL", "MD", 38.8200, -76.9900),
)
# DC is a square rotated 45 degrees (corners N, E, S, W); the Potomac cuts off the
# south-west side. Points west of the river polyline are Virginia.
DC_CORNERS = ((38.9955, -77.0410), (38.8930, -76.9090), (38.7916, -77.0386), (38.9342, -77.1199))
POTOMAC = (
    (38.80, -77.040),
    (38.85, -77.038),
    (38.87, -77.045),
    (38.89, -77.060),
    (38.905, -77.068),
    (38.93, -77.112),
)
LETTER_STREETS = (
    *("C", "D", "E", "F", "G", "H", "I", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U", "V", "W"),
    *("ADAMS", "BRYANT", "CHANNING", "DOUGLAS", "EVARTS", "FRANKLIN", "GIRARD", "HOBART", "IRVING"),
    *("KENYON", "LAMONT", "MONROE", "NEWTON", "OTIS", "QUINCY", "RANDOLPH", "SHEPHERD", "TAYLOR"),
    *("UPSHUR", "VARNUM", "WEBSTER", "ALLISON", "BUCHANAN", "CRITTENDEN", "DECATUR", "EMERSON"),
    *("FARRAGUT", "GALLATIN", "HAMILTON", "INGRAHAM", "JEFFERSON", "KENNEDY", "LONGFELLOW"),
)
OUTSIDE_STREETS = {
    "VA": ("WILSON BLVD", "CLARENDON BLVD", "COLUMBIA PIKE", "GLEBE RD", "ARLINGTON BLVD", "FAIRFAX DR"),
    "MD": ("EASTERN AVE", "SOUTHERN AVE", "WISCONSIN AVE", "CONNECTICUT AVE", "GEORGIA AVE", "MARLBORO PIKE"),
}
