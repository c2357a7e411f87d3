"""The search vocabulary: how English and Spanish questions map onto the knowledge base's English terms.

Data only; :mod:`advisor.search` applies it. Every entry works on *folded* text: lower case, accents
removed (``"Dónde"`` -> ``"donde"``, ``"agrupación máxima"`` -> ``"agrupacion maxima"``), so users who type
without accents are understood the same way.

Three tables:

- :data:`PHRASES`: regular expressions rewritten before the text is split into words. They join the
  many ways of writing one idea (``batch norm``, ``BatchNorm2d``, ``normalización por lotes``) into one
  term the knowledge base also produces. Multi-word Spanish terms and Spanish words whose stem collides
  with an English word (``transformador`` -> stem ``transform``) live here.
- :data:`SPANISH_WORDS`: single Spanish words and the English terms they mean. The search also maps
  each listed word's Snowball Spanish stem, so inflections the table does not list are understood too
  (``entrenar`` -> ``entrenaron``). A value of ``""`` drops the word, like a stop word (``capas`` =
  layers, ``colocar`` = to place). Applied only to words the (English) knowledge base does not contain,
  so an English word is never read as Spanish.
- :data:`STOP_WORDS`: function words of both languages, and the generic words of every dropout question
  (layer, network, place, put, use), matched on folded surface forms before stemming. Short Spanish
  function words (``en``, ``de``, ``la``) are here; identifiers such as ``EN-DE`` are kept whole by the
  tokenizer and never split into them.

:data:`GENERIC_TERMS` are the terms every dropout question shares: a question whose only terms are
generic ("where should dropout go?") gets the overview of each family's leading rule.
"""

from __future__ import annotations

# (alternatives, replacement) over folded text, in order. Each alternative is a regular expression that
# starts with a literal letter or digit (so the regex engine can scan for it quickly) and only matches at the
# start of a word; a replacement is never rewritten by a later entry.
PHRASES: tuple[tuple[tuple[str, ...], str], ...] = (
    # ---- Spanish multi-word terms (before the English ones, which would split them) ----
    # "Dropout before BatchNorm" is one question (DRP101), not "dropout" and "batchnorm" apart.
    (
        (r"antes de (la |una )?(batch[\s_-]*norm(alization)?|normalizacion (por|de) (los )?lotes?|bn)\b",),
        " beforebatchnorm batchnorm ",
    ),
    # "ajustar BERT" / "ajustar un modelo preentrenado": fine-tuning, not "change" (the word alone).
    (
        (
            r"ajust(ar|arlo|arla|o|e|a|amos)(?= (un |una |el |la |al |mi |los )?(modelo |red )?"
            r"(bert|roberta|gpt|t5|llama|mistral|vit|deit|pre[\s_-]?entrenad))",
        ),
        " finetuning ",
    ),
    ((r"capas? de (abandono|dropout|desactivacion)\b",), " dropout "),
    (
        (
            r"desactivacion (aleatori[oa] )?de (neuronas|unidades)\b",
            r"apagado (aleatorio )?de (neuronas|unidades)\b",
            r"eliminacion (aleatoria )?de (neuronas|unidades)\b",
        ),
        " dropout ",
    ),
    ((r"tasas? de aprendizaje\b",), " learningrate "),
    # "¿Cuánto dropout?" asks for a rate.
    ((r"cuant[oa]s? (de )?(dropout|abandono)\b",), " dropout rate "),
    (
        (
            r"tasas? de (abandono|dropout|desactivacion)\b",
            r"probabilidad(es)? de (abandono|dropout|desactivacion)\b",
            r"proporcion(es)? de (abandono|dropout|desactivacion)\b",
            r"porcentajes? de (abandono|dropout|desactivacion)\b",
        ),
        " dropout rate ",
    ),
    ((r"agrupa(cion|miento)s? (por )?maxim[oa]s?\b",), " maxpool pooling "),
    ((r"agrupa(cion|miento)s? (global(es)? )?(promedio|media)s?\b",), " globalpool pooling "),
    ((r"normalizacion(es)? (por|de|del|en) (los )?lotes?\b",), " batchnorm "),
    ((r"normalizacion(es)? (por|de|del|en) (la )?capas?\b",), " layernorm "),
    ((r"ajustes? fin[oa]s?\b", r"afina(r|do|miento)\b", r"aprendizaje por transferencia\b"), " finetuning "),
    ((r"pre[\s_-]?entren(amiento|ado|ada|ados|adas|ar)\b",), " pretraining "),
    (
        (
            r"decaimiento (de|del) (los )?pesos?\b",
            r"decaida (de|del) (los )?pesos?\b",
            r"caida (de|del) (los )?pesos?\b",
        ),
        " weightdecay ",
    ),
    ((r"regularizacion l2\b", r"penalizacion l2\b"), " weightdecay l2 "),
    ((r"completamente conectad[oa]s?\b", r"totalmente conectad[oa]s?\b"), " fc linear "),
    ((r"conexion(es)? (residual(es)?|de salto|de atajo)\b",), " residual "),
    ((r"transformador(es)? original(es)?\b",), " transformer attention vaswani "),
    ((r"transformador(es)?\b",), " transformer "),
    ((r"codificador[\s_-]+decodificador\b",), " encoder decoder "),
    ((r"sobre[\s_-]?ajust(e|es|ar|a|an|ando|ado)\b", r"sobre[\s_-]?entrenamiento\b"), " overfitting "),
    ((r"modo (de )?(evaluacion|inferencia|prueba)\b",), " eval mode "),
    ((r"modo (de )?entrenamiento\b",), " train mode "),
    ((r"funcion(es)? de activacion\b",), " activation "),
    ((r"conjuntos? de datos\b",), " dataset "),
    ((r"tamano de(l)? lote\b",), " batch size "),
    ((r"mas baj[oa]\b",), " lower "),
    ((r"mas alt[oa]\b",), " higher "),
    # ---- English (and code) terms ----
    (
        (
            r"original transformers?\b",
            r"vanilla transformers?\b",
            r"transformer (original|vanilla)\b",
            r"attention is all you need\b",
        ),
        " transformer attention vaswani ",
    ),
    ((r"u[\s_-]?nets?\b",), " unet "),
    ((r"seg[\s_-]?nets?\b",), " segnet "),
    ((r"encoder[\s_-]*decoders?\b",), " encoder decoder "),
    ((r"no[\s_-]*grad(ient)?\b",), " nograd "),
    ((r"inference[\s_-]*mode\b",), " inferencemode nograd "),
    ((r"eval(uat(e|es|ed|ing|ion|ions))?\b",), " eval "),
    ((r"weight[\s_-]*decay\b", r"l2[\s_-]*(regulari[sz]ation|penalty)\b"), " weightdecay "),
    ((r"learning[\s_-]*rates?\b", r"lr\b"), " learningrate "),
    ((r"val(id)?[\s_-]*loss(es)?\b",), " validation loss "),
    ((r"train(ing)?[\s_-]*loss(es)?\b",), " training loss "),
    ((r"how much (dropout|drop-?out)\b",), " dropout rate "),
    ((r"before (a |the )?(batch[\s_-]*norm(alization|alisation)?|bn)\b",), " beforebatchnorm batchnorm "),
    # A model whose outputs change between runs at inference: dropout left on (eval mode, DRP320/DRP321).
    (
        tuple(
            rf"{adj} (predictions?|outputs?|results?|answers?)\b"
            for adj in ("different", "random", "changing", "inconsistent", "varying", r"non[\s_-]*deterministic")
        ),
        " dropout eval mode ",
    ),
    ((r"batch[\s_-]*norm(alization|alisation)?", r"bn\b"), " batchnorm "),
    ((r"layer[\s_-]*norm(alization|alisation)?",), " layernorm "),
    ((r"max[\s_-]*pool(ing)?",), " maxpool pooling "),
    (
        (r"avg[\s_-]*pool(ing)?", r"average[\s_-]*pool(ing)?", r"global[\s_-]*pool(ing)?", r"gap\b"),
        " globalpool pooling ",
    ),
    ((r"fully[\s_-]*connected", r"dense\b", r"fc\b", r"mlps?\b", r"perceptrons?\b"), " fc linear "),
    ((r"conv(olution(al)?|olucional(es)?|olucion(es)?|net)?s?\b", r"cnns?\b"), " conv "),
    ((r"rnns?\b", r"lstms?\b", r"grus?\b", r"recurrent\b", r"recurrente?s?\b"), " rnn recurrent lstm "),
    ((r"transformers?\b", r"bert\b", r"gpt(-?\d)?\b"), " transformer "),
    ((r"self[\s_-]*attention",), " transformer attention "),
    ((r"drop[\s_-]*path", r"stochastic[\s_-]*depth"), " droppath stochasticdepth "),
    ((r"spatial[\s_-]*dropout", "dropout[123]d", r"channel[\s_-]*wise"), " spatialdropout channel "),
    (
        (r"monte[\s_-]*carlo", r"mc[\s_-]*dropout", "uncertaint(y|ies)", r"incertidumbres?\b"),
        " mcdropout uncertainty ",
    ),
    ((r"keep[\s_-]*prob(ability)?",), " keepprob retain "),
    ((r"probabilit(y|ies)\b",), " rate "),
    ((r"relu\b", "activation functions?"), " activation relu "),
    ((r"logits?\b", "output layer", "last layer", "final layer"), " output logits "),
    ((r"selu\b", r"alpha[\s_-]*dropout", r"self[\s_-]*normali[sz]ing"), " selu alphadropout "),
    (
        (r"graph[\s_-]*conv(olution(al)?)?", r"gcn\b", r"gat\b", r"graphs?\b", r"grafos?\b"),
        " graph gnn ",
    ),
    ((r"llms?\b", "large language models?"), " large language model "),
    ((r"pre[\s_-]*train(ing|ed)?",), " pretraining "),
    ((r"fine[\s_-]*tun(e|es|ing|ed)",), " finetuning "),
    (("overfit(ting|s)?",), " overfitting "),
    (("underfit(ting|s)?",), " underfitting "),
    (("residual", r"skip[\s_-]*connections?", "resnets?"), " residual resnet "),
    (("embeddings?",), " embedding "),
)

# Spanish word (folded) -> English terms ("" drops the word). Each word's Snowball Spanish stem maps too,
# so the inflections of a listed word are understood (abandono -> abandonos, entrenar -> entrenando).
SPANISH_WORDS: dict[str, str] = {
    # the subject itself
    "abandono": "dropout",
    "abandonos": "dropout",
    "desactivar": "off",  # "switch off"; desactivación de neuronas is a PHRASE (dropout)
    "desactiva": "off",
    "desactivado": "off",
    "apagar": "off",
    "apaga": "off",
    "apagado": "off",
    "activo": "active",
    "activa": "active",
    "activado": "active",
    "encendido": "active",
    # generic words of every dropout question (their English equivalents are stop words)
    "capa": "",
    "capas": "",
    "red": "",
    "redes": "",
    "neuronal": "",
    "neuronales": "",
    "neurona": "",
    "neuronas": "",
    "colocar": "",
    "coloco": "",
    "poner": "",
    "pongo": "",
    "pone": "",
    "ubicar": "",
    "situar": "",
    "meter": "",
    "usar": "",
    "uso": "",
    "usa": "",
    "usan": "",
    "utilizar": "",
    "utilizo": "",
    "aplicar": "",
    "aplico": "",
    "aplica": "",
    "deberia": "",
    "debo": "",
    "debe": "",
    "deben": "",
    "puedo": "",
    "puede": "",
    "necesito": "",
    "falta": "",  # hace falta = is needed
    "conviene": "",
    "mejor": "",
    "recomienda": "",
    "recomendable": "",
    "recomendado": "",
    "elegir": "",  # choose: as generic as 'use'
    "elijo": "",
    "escoger": "",
    "escojo": "",
    "sirve": "",
    "normal": "normal",
    # architecture
    "convolucional": "conv",
    "convolucionales": "conv",
    "convolucion": "conv",
    "recurrente": "rnn recurrent lstm",
    "recurrentes": "rnn recurrent lstm",
    "atencion": "attention",
    "agrupacion": "pooling",
    "agrupamiento": "pooling",
    "normalizacion": "normalization",
    "lote": "batch",
    "lotes": "batch",
    "codificador": "encoder",
    "decodificador": "decoder",
    "segmentacion": "segmentation",
    "semantica": "semantic",
    "incrustacion": "embedding",
    "clasificador": "classifier",
    "clasificacion": "classifier",
    "entrada": "input",
    "salida": "output",
    "oculta": "hidden",
    "ocultas": "hidden",
    "densa": "fc linear",
    "densas": "fc linear",
    "lineal": "linear",
    "residual": "residual",
    "conexion": "connection",
    "conexiones": "connection",
    "profundidad": "depth",
    "profunda": "depth",
    "peso": "weight",
    "pesos": "weight",
    "imagen": "image",
    "imagenes": "image",
    "texto": "text",
    "secuencia": "sequence",
    "modelo": "model",
    "modelos": "model",
    "lenguaje": "language",
    "grande": "large",
    "grandes": "large",
    "pequeno": "small",
    "muestra": "sample",
    "muestras": "sample",
    "parametro": "parameter",
    "parametros": "parameter",
    "bloque": "block",
    "bloques": "block",
    "cabeza": "head",
    # training process
    "entrenamiento": "training",
    "entrenar": "training",
    "entrenando": "training",
    "entrena": "training",
    "evaluacion": "eval",
    "evaluar": "eval",
    "inferencia": "inference",
    "prediccion": "prediction",
    "predicciones": "prediction",
    "validacion": "validation",
    "perdida": "loss",
    "prueba": "test",
    "regularizacion": "regularization",
    "subajuste": "underfitting",
    "tasa": "rate",
    "probabilidad": "rate",
    "proporcion": "rate",
    "porcentaje": "rate",
    "epoca": "epoch",
    "epocas": "epoch",
    "modo": "mode",
    "cambiar": "change",
    "cambio": "change",
    "modificar": "change",
    "ajustar": "change",
    "programar": "schedule",
    "programo": "schedule",
    "calendario": "schedule",
    "menor": "lower",
    "mayor": "higher",
    "alta": "high",
    "alto": "high",
    "baja": "low",
    "bajo": "low",
    "aumentar": "increase",
    "reducir": "reduce",
    "disminuir": "reduce",
    "datos": "data",
    "precision": "accuracy",
    "exactitud": "accuracy",
    "rendimiento": "performance",
    "anadir": "add",
    "agregar": "add",
    "combinar": "combine",
    "juntos": "together",
    "estimar": "estimate",
    "estimo": "estimate",
    "medir": "measure",
    "cargar": "load",
    "cargado": "load",
    "queda": "stay",
    "quedar": "stay",
    "sigue": "still",
    "todavia": "still",
    "aun": "still",
    "congelado": "frozen",
}

# Folded surface forms. English: function words and generic dropout-question words. Spanish: function words.
_ENGLISH_STOP = """
a about above after again all also am an and any are as at be been before being both but by can could did
do does doing done during each either else few for from further get gets getting got had has have having
he her here hers him his how i if in into is it its itself just me more most much my no nor not of on once
only or other our out over own same she should so some such than that the their them then there these they
this those through to too under until up upon use used uses using very was we were what when where whether
which while who whom why will with would you your yours
place placed placing put puts putting go goes going layer layers network networks neural net nets
best good better way ways recommended recommend advice guideline guidelines general thing things
seem seems seemed look looks looking like kind sort already matter matters really actually just even
need needs needed necessary
"""
_SPANISH_STOP = """
a al algo algun alguna algunas alguno algunos ante antes aquel aquella aquellas aquello aquellos aqui asi
cada como con contra cual cuales cualquier cuando cuanta cuantas cuanto cuantos de del desde despues donde
durante e el ella ellas ello ellos en entonces entre era eran eres es esa esas ese eso esos esta estaba
estado estamos estan estar estas este esto estos estoy fue fueron ha habia han has hasta hay he la las le
les lo los mas me mi mis mucha muchas mucho muchos muy nada ni no nos nosotros o os otra otras otro otros
para pero poco por porque pues que quien quienes se sea sean ser si sido siempre sin sino sobre solo son
soy su sus tambien tan tanto te tenemos tener tengo ti tiene tienen toda todas todo todos tu tus un una
unas uno unos usted ustedes va vamos van vosotros y ya yo ir hacer hace hago hacen deberia deberian
"""
STOP_WORDS: frozenset[str] = frozenset((_ENGLISH_STOP + _SPANISH_STOP).split())

# Terms (after stemming) that every dropout question shares; alone they ask for the overview.
GENERIC_TERMS: frozenset[str] = frozenset({"dropout"})

# Terms (after stemming) that name dropout or one of its kinds. A question without any of them is about
# something else unless one entry covers nearly all of it (see advisor.qa).
DROPOUT_TERMS: frozenset[str] = frozenset(
    {
        "dropout",
        "drop",
        "droppath",
        "stochasticdepth",
        "spatialdropout",
        "alphadropout",
        "mcdropout",
        "keepprob",
        "dropblock",
        "dropconnect",
    }
)

# Terms (after stemming) that name a category of recommendations. A question whose only specific term is
# one of them ("what dropout rate should I use?") gets that category's entries, like the overview.
CATEGORY_TERMS: dict[str, str] = {"rate": "rate"}
