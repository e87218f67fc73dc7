"""Credits and dollars: what a clip costs (`prices`) and amounts in US cents (`usd`)."""
