def test_round_trip(client):
    lib = client.create_library("smoke")
    client.add_document("smoke", {"id": "a", "text": "The cat sat on the mat."})
    hits = client.search("smoke", query="a kitten", k=1)
    assert lib["dimension"] == 384
    assert hits[0]["document_id"] == "a"
