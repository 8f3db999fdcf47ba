"""A small conversational-memory retrieval set: facts said in known turns, questions about them.

One user (Maya) talks to her assistant over many sessions. Each FACT is one turn that holds the
answer to its question; the questions paraphrase the facts (some name exact ids or names, most
do not). DISTRACTORS are turns on the same subjects that do not answer the question, and FILLER
is small talk. `eval_recall.py` deals them into sessions and writes them as agent memory files
in three layouts (JSONL transcripts, JSON session files, Markdown logs).
"""

from __future__ import annotations

# (speaker, fact turn, question)
FACTS: list[tuple[str, str, str]] = [
    ("user", "We finally adopted a rescue greyhound last Saturday, her name is Biscuit.",
     "What is the name of the dog Maya adopted?"),
    ("user", "My sister Priya is getting married in Lisbon on the 14th of June.",
     "Where is Maya's sister's wedding taking place?"),
    ("user", "I switched my morning run to 6:15 because the park gets crowded after seven.",
     "At what time does Maya go running in the morning now?"),
    ("user", "The new job at Heliotrope Labs starts on March 3rd, I'll be leading the data "
             "platform team.", "When does Maya start her new job?"),
    ("user", "I'm allergic to penicillin, found out the hard way when I was twelve.",
     "Does Maya have any drug allergies?"),
    ("user", "Our wifi password at the cabin is written on the fridge: it's bluefjord42.",
     "What is the wifi password at the cabin?"),
    ("user", "I've been learning the cello for about eight months, mostly Bach suites.",
     "Which musical instrument is Maya learning to play?"),
    ("user", "Ticket OPS-7731 is the one about the flaky nightly backup on the NAS.",
     "Which ticket tracks the unreliable backup job?"),
    ("user", "My car is a 2016 Subaru Outback, dark green, and the lease ends in September.",
     "What kind of car does Maya drive?"),
    ("user", "For my birthday I'd love a day trip to the Kröller-Müller museum to see the "
             "Van Goghs.", "What would Maya like to do for her birthday?"),
    ("user", "My landlord, Mr. Okonkwo, finally agreed to fix the leaking bathroom ceiling "
             "next Tuesday.", "When will the leak in the bathroom be repaired?"),
    ("user", "I decided to stop drinking coffee after lunch, it was ruining my sleep.",
     "Why did Maya cut back on afternoon caffeine?"),
    ("user", "The book club is reading 'Piranesi' by Susanna Clarke this month.",
     "What novel is Maya's book club currently reading?"),
    ("user", "Dad's hip surgery went well, he should be walking without the frame in six "
             "weeks.", "How is Maya's father recovering from his operation?"),
    ("user", "I put 500 euros a month into an index fund, automatically on the 25th.",
     "How much does Maya invest every month?"),
    ("user", "My favourite dish to cook is mushroom risotto with a splash of white wine.",
     "What meal does Maya enjoy making the most?"),
    ("user", "The kids' school is Montessori De Linde, pickup is at 3:15 on weekdays.",
     "What time do the children need to be collected from school?"),
    ("user", "I passed the AWS Solutions Architect Professional exam yesterday with 871 "
             "points.", "Which certification did Maya recently obtain?"),
    ("user", "We're thinking about moving to Utrecht because my partner Daan got a job at "
             "the university there.", "Why might Maya's family relocate?"),
    ("user", "My blood pressure was 128 over 82 at the last check-up, the doctor was happy "
             "with it.", "What were Maya's blood pressure readings at the doctor?"),
    ("user", "I'm training for the Amsterdam half marathon in October, aiming for under "
             "1:50.", "What race is Maya preparing for?"),
    ("user", "The garden project this spring is a raised bed for tomatoes and basil along "
             "the south fence.", "What is Maya planning to grow in the garden?"),
    ("user", "Our anniversary dinner is booked at Restaurant Wolf on Friday at 8pm.",
     "Where are Maya and her partner celebrating their anniversary?"),
    ("user", "I keep my passport in the blue folder in the top drawer of the desk.",
     "Where does Maya store her passport?"),
    ("user", "My team's on-call rotation changed: I'm on call every third week starting "
             "Monday.", "How often is Maya on call now?"),
    ("user", "I gave up on Duolingo Spanish and hired a tutor called Lucía, lessons on "
             "Wednesdays.", "Who teaches Maya Spanish now?"),
    ("user", "The plumber quoted 1,340 euros to replace the boiler, which seems steep.",
     "How much would a new boiler cost?"),
    ("user", "Daan is vegan, so for the dinner party I need a main without dairy or eggs.",
     "What dietary restrictions does Maya's partner have?"),
    ("user", "I finished the pottery course; my best piece is a lopsided teal mug.",
     "What did Maya make in her ceramics class?"),
    ("user", "Grandma Ilse turns 90 on August 2nd, the whole family is going to Groningen.",
     "How old will Maya's grandmother be at her next birthday?"),
    ("user", "The migration of the billing database to Postgres 16 is scheduled for the "
             "night of the 19th.", "When is the billing database upgrade happening?"),
    ("user", "I sprained my left ankle playing padel, so no running for two weeks.",
     "What injury is stopping Maya from exercising?"),
    ("user", "Our daughter Noor has her first swimming diploma exam on Saturday morning.",
     "What test does Maya's daughter have this weekend?"),
    ("user", "My manager Esther wants the quarterly roadmap draft by the end of next week.",
     "What deadline did Maya's boss set?"),
    ("user", "I'm saving for a trip to Japan in April, mostly Kyoto and the Kumano Kodo "
             "trail.", "Where does Maya want to travel next spring?"),
    ("user", "I replaced the bike chain myself after watching a tutorial; it took two hours.",
     "What repair did Maya do on her bicycle?"),
    ("user", "The podcast I can't stop listening to is 'Hardcore History' by Dan Carlin.",
     "Which podcast is Maya hooked on?"),
    ("user", "My therapist suggested journaling for ten minutes every evening before bed.",
     "What habit did Maya's therapist recommend?"),
    ("user", "The smoke detector in the hallway needs a 9V battery, it keeps chirping.",
     "Which device in the house needs a new battery?"),
    ("user", "I volunteer at the food bank on the first Sunday of every month.",
     "How often does Maya volunteer?"),
]

# Turns on the same subjects that do not answer the questions above.
DISTRACTORS: list[tuple[str, str]] = [
    ("user", "My neighbour has a labrador called Max who barks at the postman every day."),
    ("user", "My cousin got married in Porto two years ago, it rained the whole day."),
    ("user", "The park near the office is lovely for an evening walk."),
    ("user", "Heliotrope Labs has an office in Rotterdam as well as one in Delft."),
    ("user", "Ticket OPS-7730 was about rotating the TLS certificates on the proxy."),
    ("user", "Daan's car is an old Volvo that we mostly use for trips to IKEA."),
    ("user", "I went to the Rijksmuseum last year, the Night Watch was under restoration."),
    ("user", "The kitchen tap was dripping too but I fixed that with a new washer."),
    ("user", "I still drink green tea in the morning, usually sencha."),
    ("user", "Last month the book club read a thriller that nobody liked."),
    ("user", "Mum's knee is fine now, she's back to cycling to the market."),
    ("user", "I pay the mortgage on the first of the month from the joint account."),
    ("user", "We had pizza on Friday because nobody felt like cooking."),
    ("user", "Noor's friend from school, Sem, came over to play on Thursday."),
    ("user", "The Rotterdam marathon is in April but I'm not running it this year."),
    ("user", "I renewed my driving licence at the municipality, it took ten minutes."),
    ("user", "Esther is on holiday in Crete for the next two weeks."),
    ("user", "Flights to Lisbon are cheap in February, maybe a weekend trip."),
    ("user", "The guitar in the attic belonged to my uncle, nobody plays it."),
    ("user", "Our building's fire alarm test is every first Monday at noon."),
]

FILLER: list[tuple[str, str]] = [
    ("user", "Morning! Quick question before I start work."),
    ("assistant", "Good morning, Maya. What can I help with?"),
    ("user", "Thanks, that's really helpful."),
    ("assistant", "You're welcome. Anything else on your mind?"),
    ("user", "Can you remind me later to reply to that email?"),
    ("assistant", "Sure, I'll remind you this afternoon."),
    ("assistant", "Noted. I've added it to your memory."),
    ("user", "Let's continue tomorrow, I'm tired."),
    ("assistant", "Of course. Rest well."),
    ("user", "Can you summarise what we discussed?"),
    ("assistant", "Here's a short summary of today's conversation."),
    ("user", "Hmm, let me think about that for a bit."),
    ("assistant", "Take your time; I'll keep the notes."),
    ("user", "Could you draft a short message for the group chat?"),
    ("assistant", "Here's a draft you can adjust before sending."),
    ("user", "What's the weather like this weekend?"),
    ("assistant", "It looks mild with some showers on Sunday."),
    ("user", "Okay, good to know."),
    ("assistant", "That sounds like a plan."),
    ("user", "I'll get back to you on that."),
]
